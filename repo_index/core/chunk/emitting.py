"""Turning packed groups into chunks, each counted exactly and under the cap.

The file is partitioned at the group starts (moved back to the start of the line when only
indentation precedes them), so nothing is lost or duplicated. Each piece is trimmed and
counted exactly (header included): read off the whole-file tokenisation when its edges
allow it (`TokenMeter.count_from_file`), else re-encoded, and always re-encoded within a
few tokens of the cap. One over the cap (tiktoken counts are not additive, the estimate
can be off) is halved at a syntax boundary, else a line, else a token. A chunk of a few
tokens (a `}` that missed its block's chunk) joins its neighbour when the result fits.
"""

from __future__ import annotations

from bisect import bisect_left

from repo_index.core.chunk.cuts import indent_start, split_points
from repo_index.core.chunk.groups import START, Group
from repo_index.core.chunk.naming import Namer
from repo_index.core.chunk.records import Chunk, embedding_text
from repo_index.core.chunk.tokens import count_tokens

_TINY_TOKENS = 3  # a chunk this small (`}`, `end`) joins a neighbour when that fits


class ChunkEmitter:
    """Cuts one file (in `meter.data`) into chunks along its packed groups."""

    def __init__(self, path: str, language: str, namer: Namer) -> None:
        self.path, self.language, self.namer = path, language, namer
        self.meter = meter = namer.meter
        self.data = meter.data
        self.made: list[tuple[Chunk, int, int]] = []  # (chunk, region start, region end)

    def chunks(self, groups: list[Group]) -> list[Chunk]:
        data, newlines = self.data, self.meter.newlines
        bounds = [0]
        for g in groups[1:]:
            bounds.append(max(indent_start(data, newlines, g.items[0][START]), bounds[-1]))
        bounds.append(len(data))
        for i, g in enumerate(groups):
            cuts = sorted({item[START] for item in g.items[1:]})
            self._emit(bounds[i], bounds[i + 1], cuts)
        return self._absorb_tiny(self.made)

    def _chunk(self, a: int, b: int) -> Chunk | bool | None:
        """The chunk for region data[a:b]: None if blank, False if over the cap. It is
        named after what the region holds (`naming`), so each half of a halved group, or
        a tiny chunk joined to its neighbour, is named for itself."""
        meter = self.meter
        raw = self.data[a:b].decode("utf-8")
        body = raw.lstrip()
        if not body:
            return None
        # Keep the first line's indentation, unless that line began in the previous chunk.
        lead = len(raw) - len(body)
        first_line = raw.rfind("\n", 0, lead) + 1
        if first_line == 0 and a > 0 and self.data[a - 1] != 0x0A:
            first_line = lead
        text = raw[first_line:].rstrip()
        first = a + len(raw[:lead].encode("utf-8"))
        symbol, defines, header, header_n = self.namer.name(a, b, first)
        n = None
        if meter.line_additive and "\r" not in raw[first_line:lead]:
            text_start = a + len(raw[:first_line].encode("utf-8"))
            text_end = b - len(raw[first_line + len(text):].encode("utf-8"))
            n = meter.count_from_file(text_start, text_end, header_n)
        if n is None:
            n = count_tokens(embedding_text(self.path, header, text), meter.encoding)
        if n > meter.max_tokens:
            return False
        start_line = bisect_left(meter.newlines, a) + 1 + raw.count("\n", 0, first_line)
        return Chunk(self.path, self.language, start_line, start_line + text.count("\n"),
                     symbol, text, n, defines, header)

    def _emit(self, a: int, b: int, cuts: list[int]) -> None:
        """Emit data[a:b] as one chunk, or halve it at the best cut if over the cap."""
        chunk = self._chunk(a, b)
        if chunk is None:
            return
        if chunk:
            self.made.append((chunk, a, b))
            return
        inner = split_points(self.meter, a, b, cuts)
        if not inner:
            raise RuntimeError(
                f"cannot split {self.data[a:b]!r} under {self.meter.max_tokens} tokens")
        estimate = self.meter.estimate_tokens
        half = estimate(a, b) / 2
        cut = min(inner, key=lambda c: abs(estimate(a, c) - half))
        self._emit(a, cut, [c for c in cuts if c < cut])
        self._emit(cut, b, [c for c in cuts if c > cut])

    def _absorb_tiny(self, made: list[tuple[Chunk, int, int]]) -> list[Chunk]:
        """Join chunks of a few tokens (a closing `}` that missed its block's chunk by a
        token) to the previous chunk, else the next one, when the result fits."""
        out: list[tuple[Chunk, int, int]] = []
        for k, (c, a, b) in enumerate(made):
            if len(c.text) <= 40 and count_tokens(c.text, self.meter.encoding) <= _TINY_TOKENS:
                if out:
                    prev, pa, _ = out[-1]
                    joined = self._chunk(pa, b)
                    if joined:
                        out[-1] = (joined, pa, b)
                        continue
                if k + 1 < len(made):
                    nxt, _, nb = made[k + 1]
                    joined = self._chunk(a, nb)
                    if joined:
                        made[k + 1] = (joined, a, nb)
                        continue
            out.append((c, a, b))
        return [c for c, _, _ in out]
