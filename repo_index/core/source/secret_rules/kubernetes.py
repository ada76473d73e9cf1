"""The values of a Kubernetes Secret manifest's `data:` and `stringData:` blocks.

A regex cannot bound a YAML block (gitleaks' kubernetes-secret-yaml rule takes one value
within 100 characters of `data:`), so the blocks are found by indentation: in each YAML
document (`---` separates them) that says `kind: Secret`, every line indented under
`data:`/`stringData:` keeps its key and loses its value, including block scalars (`|`,
`>`) whose lines are deeper still. Helm template expressions and empty values stay.
"""

from __future__ import annotations

import re

KIND = "kubernetes-secret"
_KIND_SECRET = re.compile(r"^[ \t]*[\"']?kind[\"']?[ \t]*:[ \t]*[\"']?Secret[\"']?[ \t]*(?:#.*)?$", re.M)
_BLOCK = re.compile(r"^([ \t]*)(?:data|stringData)[ \t]*:[ \t]*(?:#.*)?$")
_ENTRY = re.compile(r"^([ \t]*[^\s:#][^:]*:[ \t]*)(.*?)[ \t]*$")  # key: value
_KEPT = re.compile(r"^(?:\{\{.*\}\}|\"\"|''|[|>][-+]?[0-9]?)?$")  # template, empty, block indicator


def redact_kubernetes_secrets(text: str, placeholder: str = f"[REDACTED:{KIND}]") -> tuple[str, int]:
    """`text` with every value of a Secret's data blocks replaced, and how many."""
    if "Secret" not in text or not _KIND_SECRET.search(text):
        return text, 0
    lines = text.split("\n")
    count = 0
    start = 0
    for end in [i for i, line in enumerate(lines) if line.startswith("---")] + [len(lines)]:
        doc = range(start, end)
        start = end + 1
        if any(_KIND_SECRET.match(lines[i]) for i in doc):
            count += _redact_blocks(lines, doc, placeholder)
    return "\n".join(lines), count


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _redact_blocks(lines: list[str], doc: range, placeholder: str) -> int:
    count, block_indent, entry_indent = 0, None, None
    for i in doc:
        line = lines[i]
        if not line.strip():
            continue
        indent = _indent(line)
        if block_indent is not None and indent <= block_indent:
            block_indent = None  # the block ended
        if block_indent is None:
            m = _BLOCK.match(line)
            if m:
                block_indent, entry_indent = len(m.group(1)), None
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent > entry_indent:  # a line of a block scalar
            lines[i] = line[:indent] + placeholder
            continue
        m = _ENTRY.match(line)
        if m and not _KEPT.match(m.group(2)):
            lines[i] = m.group(1) + placeholder
            count += 1
        elif m and m.group(2)[:1] in "|>":
            count += 1  # its value is the deeper lines that follow
    return count
