"""What a chunk is named after, and the header line that names it within the budget.

A chunk over a byte range of the file is named by the file's definitions
(`definitions.Definitions`): `defines` lists those whose first byte is in the range,
`symbol` is the first of them, else the innermost definition holding the chunk's first
byte (a piece of a long method), else "". The embedded header line names `defines` (else
`symbol`): `# path > A.f, A.g, A.h`. It may take a third of the budget: names that do not
fit are dropped from the end and counted (`A.f, A.g +3 more`); a first name that does
not fit alone loses its outer names (`Inner.method`), then goes. So names never take
room from the code beyond that third, and a chunk's boundaries move only where its
header grew.

Packing asks for estimates (`Namer.fits`): the path's tokens plus, per name, the tokens
of ", <name>" (summed over a range in O(1)), which errs high by the one token " > " and
"," share; the exact count is made when the chunk is emitted.

That exact count is the same sum when it provably is (`Namer._summed`), so most header
lines are never encoded: cl100k's pre-tokenizer cuts " > A.f, A.g\n" into " >", " A",
".f", ",", " A", ".g", "\n" - a letter or digit run stops at ",", "\n" and " +"; "," and
" >" stop at the space after them - and BPE encodes each piece alone. So when every name
involved ends in an ASCII letter or digit, the line's tokens are those of " >", of
" <first name>" (its ", <name>" cost less the one token of ","), of each other ", <name>",
of " +N more" and of "\n". A name ending in anything else (`__init__`: "_," is one piece)
gets its line encoded.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import accumulate

import numpy as np

from repo_index.core.chunk.definitions import Definitions
from repo_index.core.chunk.measure import TokenMeter
from repo_index.core.chunk.records import HEADER_NAME_CHARS, clip_tail
from repo_index.core.chunk.tokens import count_tokens, token_end_array

Label = tuple[str, ...]


@lru_cache(maxsize=256)
def _piece_tokens(encoding, piece: str) -> int:
    return count_tokens(piece, encoding)


class Namer:
    """Names the chunks of one file and prices their header lines."""

    def __init__(self, meter: TokenMeter, definitions: Definitions) -> None:
        self.meter, self.defs = meter, definitions
        self.max_tokens = meter.max_tokens
        self.cap = meter.max_tokens // 3
        # No header line takes more (the path's own may exceed the third: it stays).
        self.top = max(self.cap, meter.path_header)
        sep = meter.separator
        self.full = [sep.join(label) for label in definitions.labels]
        self.names = [clip_tail(name, HEADER_NAME_CHARS) for name in self.full]
        self._cost_through: list[int] | None = None  # counted when first needed
        self._fitted: dict[tuple[int, int], tuple[str, int]] = {}
        # unclean[i]: how many of the first i names do not end in an ASCII letter or
        # digit; None where the path part is not counted apart (see `_summed`).
        self._unclean: list[int] | None = None
        if meter.path_part_tokens is not None:
            self._unclean = [0, *accumulate(not n[-1:].isascii() or not n[-1:].isalnum()
                                            for n in self.names)]

    def estimate(self, a: int, b: int) -> int:
        """Tokens of the header line of a chunk over data[a:b] (erring high)."""
        defs = self.defs
        held = defs.between(a, b)
        if held:
            through = self._cost_through
            if through is None:
                through = self._cost_through = self._name_costs()
            n = self.meter.path_header + through[held.stop] - through[held.start]
        else:
            i = defs.enclosing(a)
            if i < 0:
                return self.meter.path_header
            n = self.meter.header_tokens(self.names[i])
        return n if n < self.top else self.top

    def _name_costs(self) -> list[int]:
        """through[i]: the tokens ", <name>" adds to a header line for the definitions
        before i. One encoding of all of them, each token counted with the name it ends
        in (a call per name costs more than the chunking of a small file)."""
        pieces = [(", " + n).encode("utf-8") for n in self.names]
        bounds = np.fromiter(accumulate(len(p) for p in pieces), np.int64, len(pieces))
        ends = token_end_array(b"".join(pieces).decode("utf-8"), self.meter.encoding)
        return [0, *np.searchsorted(ends, bounds, side="right").tolist()]

    def fits(self, a: int, b: int) -> bool:
        """Whether data[a:b] (estimated) fits with its header line."""
        n = self.meter.estimate_tokens(a, b)
        return n + self.top <= self.max_tokens or n + self.estimate(a, b) <= self.max_tokens

    def label_tokens(self, label: Label) -> int:
        """Tokens of a header line naming `label` alone (shortened as `name` would)."""
        if not label:
            return self.meter.path_header
        return self._fit([clip_tail(self.meter.separator.join(label), HEADER_NAME_CHARS)],
                         label)[1]

    def name(self, a: int, b: int, first: int) -> tuple[str, str, str, int]:
        """(symbol, defines, header, tokens of the header line) of a chunk over data[a:b]
        whose text starts at byte `first`."""
        defs = self.defs
        held = defs.between(a, b)
        if held:
            lo, hi = held.start, held.stop
            defines = ", ".join(self.full[lo:hi])
        else:
            lo = defs.enclosing(first)
            if lo < 0:
                return "", "", "", self.meter.path_header
            hi, defines = lo + 1, ""
        fitted = self._fitted.get((lo, hi))
        if fitted is None:
            fitted = self._fitted[(lo, hi)] = self._fit(self.names[lo:hi], defs.labels[lo], lo)
        return self.full[lo], defines, *fitted

    def _summed(self, lo: int, hi: int, more: int) -> int | None:
        """Exact tokens of the header line naming names[lo:hi] (and " +`more` more" if
        `more`), summed from the names' costs, or None when that is not provably exact (see
        the module docstring). The costs were counted in one string ", n0, n1, ...", so the
        name before `lo` must end cleanly too, or a token of it would count in the cost
        of names[lo]."""
        unclean = self._unclean
        if unclean is None or unclean[hi] - unclean[lo - 1 if lo else 0]:
            return None
        through = self._cost_through
        if through is None:
            through = self._cost_through = self._name_costs()
        meter = self.meter
        # path, " >", the names (less the first one's ","), "\n"
        n = meter.path_part_tokens + _piece_tokens(meter.encoding, " >") \
            + through[hi] - through[lo] - 1 + 1
        if more:
            n += _piece_tokens(meter.encoding, f" +{more} more")
        return n

    def _fit(self, names: list[str], first: Label, at: int | None = None) -> tuple[str, int]:
        """(header, tokens of its line): as many of `names` as fit in a third of the
        budget, the rest counted; else the tail of the first name (`first`); else none.
        `at`: the index of names[0] in `self.names`, when `names` is a run of them."""
        tokens, cap = self.meter.header_tokens, self.cap

        def keep(k: int) -> tuple[str, int]:
            more = len(names) - k
            header = ", ".join(names[:k])
            if more:
                header += f" +{more} more"
            n = self._summed(at, at + k, more) if at is not None else None
            return header, tokens(header) if n is None else n

        best = keep(len(names))
        if best[1] <= cap:
            return best
        lo, hi, best = 1, len(names) - 1, None  # the most names that fit, by bisection
        while lo <= hi:
            mid = (lo + hi) // 2
            attempt = keep(mid)
            if attempt[1] <= cap:
                best, lo = attempt, mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best
        parts = list(first)
        header = names[0]
        while True:  # `Outer.Inner.method`, then `Inner.method`, then `method`
            if tokens(header) <= cap:
                return header, tokens(header)
            parts.pop(0)
            if not parts:
                return "", self.meter.path_header
            header = clip_tail(self.meter.separator.join(parts), HEADER_NAME_CHARS)
