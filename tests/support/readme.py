"""The commands a markdown file shows: in its ```sh blocks, and in inline code.

A ```sh block holds one command per line; `&&` separates several on a line. Inline code
counts as a command when its first word is one a reader would type (`remediator`, `pip`,
`bash`, ...): prose that names a subcommand alone (`pause RULE`) is not a command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

COMMAND_WORDS = {"remediator", "pip", "pytest", "python3", "bash", "apt-get", "mkdocs", "."}
FENCE = re.compile(r"^```(\S*)\s*$")
INLINE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    line: int  # 1-based, in the markdown file
    inline: bool

    def __str__(self) -> str:
        return shlex.join(self.argv)


def split(text: str, line: int, inline: bool) -> list[Command]:
    """A shell line into its `&&`-separated commands."""
    words = shlex.split(text, comments=True)
    commands, current = [], []
    for word in [*words, "&&"]:
        if word == "&&":
            if current:
                commands.append(Command(tuple(current), line, inline))
            current = []
        else:
            current.append(word)
    return commands


def blocks(markdown: str) -> list[tuple[str, int, str]]:
    """Every fenced block: (its language, the line it starts on, its text)."""
    found, language, start, body = [], None, 0, []
    for number, line in enumerate(markdown.splitlines(), start=1):
        fence = FENCE.match(line)
        if fence and language is None:
            language, start, body = fence.group(1), number + 1, []
        elif fence:
            found.append((language, start, "\n".join(body)))
            language = None
        elif language is not None:
            body.append(line)
    return found


def commands(markdown: str) -> list[Command]:
    """The commands shown, in the order a reader meets them."""
    found: list[Command] = []
    lines = markdown.splitlines()
    for language, start, text in blocks(markdown):
        body = text.splitlines()
        for offset, line in enumerate(body):
            if language in ("sh", "bash", "shell") and line.strip():
                found.extend(split(line, start + offset, inline=False))
        lines[start - 2 : start + len(body)] = [""] * (len(body) + 2)  # fences and body
    prose = "\n".join(lines)
    for match in INLINE.finditer(prose):
        words = match.group(1).split()  # inline code may wrap across lines
        if words and words[0] in COMMAND_WORDS and words[0] != ".":
            line = prose.count("\n", 0, match.start()) + 1
            found.extend(split(" ".join(words), line, inline=True))
    return sorted(found, key=lambda command: command.line)
