"""The rule language: files, YAML with line numbers, schema, conditions, indexes, templates.

Pure: compiles rule files into frozen `Rule` objects and matches events
against them. Imports only the shared base (model, errors, durations); never
NATS, HTTP or SSH.
"""
