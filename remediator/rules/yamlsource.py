"""YAML with lines: a rule or case file parsed into plain data that remembers where it was written.

This module owns reading YAML the way remediator's files are written and anchoring
problems in them. `parse_document` reads YAML 1.2 booleans (only true/false: `on`,
`no` and `yes` stay strings, so `on:` is a key and `country: NO` is Norway), no
timestamps (dates stay strings, as in JSON), refuses duplicate keys, self-referring
aliases and alias bombs, and resolves `<<` merges; the `Document` it returns keeps
the line of every key and list item (and the first content line of `|` and `>`
blocks), so `Document.error` turns a path into a `RuleError` naming file, line,
rule and field. What the data means is for its readers (`loader`, `rulecases`).

Files are composed with libyaml (PyYAML's C parser, four times faster; its nodes carry
the same marks) when PyYAML has it. A file libyaml refuses is read again by the
pure-Python parser, whose error messages (and verdict) are the ones users see, so the
C parser only ever speeds up files that parse.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import yaml
from yaml.constructor import SafeConstructor

from remediator.errors import RuleError

Where = tuple[str | int, ...]  # keys and list indexes from the document root

_NODE_BUDGET = 1_000_000  # YAML nodes per file after alias expansion ("billion laughs")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_DROPPED_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")


def _resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    table = {
        first: [(tag, pattern) for tag, pattern in entries if tag not in _DROPPED_TAGS]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    yaml_bool = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    for first in "tTfF":
        table.setdefault(first, []).insert(0, ("tag:yaml.org,2002:bool", yaml_bool))
    return table


_RESOLVERS = _resolvers()


class _YamlLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = _RESOLVERS


_Loader: TypeAlias = "type[_YamlLoader] | type[yaml.CSafeLoader]"
_FAST_LOADER: _Loader | None = None
if yaml.__with_libyaml__:  # PyYAML built without libyaml has no CSafeLoader

    class _FastYamlLoader(yaml.CSafeLoader):
        """libyaml's parser and composer; resolving stays Python's (libyaml calls it)."""

        yaml_implicit_resolvers = _RESOLVERS

    _FAST_LOADER = _FastYamlLoader


class _YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(slots=True)
class Document:
    """One parsed file: its data and where each key and item was written."""

    file: str
    data: object = None
    lines: dict[Where, int] = field(default_factory=dict)
    blocks: dict[Where, int] = field(default_factory=dict)  # first content line of `|`, `>`

    def line(self, where: Where) -> int:
        for end in range(len(where), -1, -1):
            if (line := self.lines.get(where[:end])) is not None:
                return line
        return 1

    def error(self, where: Where, message: str, line: int | None = None) -> RuleError:
        rule, place = rule_and_field(self.data, where)
        line = self.line(where) if line is None else line
        return RuleError(message, file=self.file, line=line, rule=rule, field=place)


def rule_and_field(data: object, where: Where) -> tuple[str, str]:
    """The rule name (when known) and the field path `where` is at, as errors show them."""
    if len(where) >= 2 and where[0] == "rules" and isinstance(where[1], int):
        rules = data.get("rules") if isinstance(data, Mapping) else None
        raw = rules[where[1]] if isinstance(rules, list) else None
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name:
            return name, field_path(where[2:])
    return "", field_path(where)


def field_path(where: Where) -> str:
    """`where` as errors show a field: `actions[0].http.url`."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


class _Builder:
    """Builds plain Python values from composed YAML nodes, recording lines by path."""

    def __init__(self, loader: SafeConstructor, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.duplicates: list[tuple[Where, str, int]] = []  # reported once names are known
        self.active: set[int] = set()
        self.budget = _NODE_BUDGET
        self.strings: dict[str, str] = {}

    def shared(self, text: str) -> str:
        """One object per distinct string: rules repeat keys, names and templates, and the
        loaded rules keep many of them."""
        return self.strings.setdefault(text, text)

    def value(self, node: yaml.Node, where: Where) -> object:
        self.budget -= 1
        if self.budget < 0:
            raise _YamlProblem(node.start_mark.line + 1, "too many nodes after alias expansion")
        if isinstance(node, yaml.ScalarNode):
            if node.style in ("|", ">"):
                self.document.blocks[where] = node.start_mark.line + 2
            if node.tag == _STR_TAG:  # what construct_object returns, minus four calls
                return self.shared(node.value)
            return self.loader.construct_object(node)
        if id(node) in self.active:
            raise _YamlProblem(node.start_mark.line + 1, "an alias refers to itself")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, where)
            return self.sequence(node, where)
        finally:
            self.active.discard(id(node))

    def sequence(self, node: yaml.Node, where: Where) -> list[object]:
        items = []
        for index, item in enumerate(node.value):
            self.document.lines[(*where, index)] = item.start_mark.line + 1
            items.append(self.value(item, (*where, index)))
        return items

    def mapping(self, node: yaml.MappingNode, where: Where) -> dict[str, object]:
        merged: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.merge(value_node, where, merged)
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlProblem(line, "mapping keys must be plain strings")
            key = self.shared(str(key_node.value))
            if key in out:
                message = (
                    f"duplicate key {key!r} (first at line {self.document.line((*where, key))})"
                )
                self.duplicates.append(((*where, key), message, line))
            self.document.lines[(*where, key)] = line
            out[key] = self.value(value_node, (*where, key))
        return merged | out

    def merge(self, node: yaml.Node, where: Where, into: dict[str, object]) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise _YamlProblem(source.start_mark.line + 1, "'<<' merges only mappings")
            for key, value in self.mapping(source, where).items():
                into.setdefault(key, value)


def parse_document(text: str, file: str) -> tuple[Document | None, list[RuleError]]:
    """YAML read the way rule files are (YAML 1.2 booleans, lines kept, duplicate keys
    refused); the loader reads rule files with it and `remediator test` its case files."""
    if _FAST_LOADER is not None and _libyaml_agrees(text):
        with contextlib.suppress(yaml.YAMLError):  # refused: PyYAML says why, in its words
            return _parse(_FAST_LOADER, text, file)
    try:
        return _parse(_YamlLoader, text, file)
    except yaml.MarkedYAMLError as exc:
        message = "; ".join(part for part in (exc.context, exc.problem) if part)
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 0
        line = min(line, len(text.splitlines()) or 1)  # not past the end of the file
        return None, [RuleError(f"YAML syntax error: {message}", file=file, line=line)]
    except yaml.YAMLError as exc:
        return None, [RuleError(f"YAML error: {exc}", file=file)]


# Where libyaml accepts what PyYAML refuses (found by differential fuzzing): a tab as a
# separator, `?` inside a flow scalar, a comment right after a block scalar header, a tag
# running into a flow indicator, a BOM past the start. Files with anything like them go to
# the Python parser alone, as do files with characters its reader refuses.
_LENIENT = re.compile(r"[\t?]|[|>][-+0-9]*#|!\S*[,\[\]{}]|(?<=.)\ufeff", re.DOTALL)


def _libyaml_agrees(text: str) -> bool:
    """Whether libyaml's verdict on `text` is PyYAML's: nothing it is more lenient about."""
    return not (_LENIENT.search(text) or yaml.reader.Reader.NON_PRINTABLE.search(text))


def _parse(loader_class: _Loader, text: str, file: str) -> tuple[Document | None, list[RuleError]]:
    """One parser's reading of `text`; YAMLError escapes, the builder's problems do not."""
    document = Document(file=file)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [RuleError("empty file; expected `rules:`, a list of rules", file=file)]
        document.lines[()] = node.start_mark.line + 1
        builder = _Builder(loader, document)
        document.data = builder.value(node, ())
        return document, [document.error(*duplicate) for duplicate in builder.duplicates]
    except _YamlProblem as exc:
        return None, [RuleError(exc.message, file=file, line=exc.line)]
    finally:
        loader.dispose()
