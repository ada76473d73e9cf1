"""The lines of a hit to show: for now the chunk's first lines (being replaced by the
best-matching window)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snippet:
    start_line: int
    end_line: int
    text: str


def best_lines(text: str, start_line: int, query: str, names: tuple[str, ...] = (), lines: int = 4) -> Snippet:
    shown = text.splitlines()[:lines]
    return Snippet(start_line, start_line + max(len(shown), 1) - 1, "\n".join(shown))
