"""Find secrets with rule files in gitleaks' format (gitleaks.toml: its rules, unchanged;
context.toml: ours, for what those rules handle poorly).

A rule has a regex (RE2 syntax: the rules were written for Go's regexp, and RE2 runs them
as written and in linear time, so no input can make a match take long), the keywords
one of which the text must hold (case-insensitively) before the regex runs, an optional
path regex, an entropy floor for the secret, the capture group that is the secret, and
allowlists (regexes on the secret, match or line; stopwords; paths). The semantics are
gitleaks' (detect/detect.go); left out: the global path allowlist (deciding which files
are read is discovery's job), decoding of base64/hex segments, composite rules, and
rules that are too noisy for redaction (`SKIPPED`).

One RE2 set of every keyword tells in one pass over the lowercased text which rules can
match at all; most files wake none or a few. A rule's regexes are compiled the first time
it is woken: compiling all ~200 took 60 ms, which every process paid that masked a
single path (an unchanged reindex of a small repository, for one).
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import re2

FOLDER = Path(__file__).parent
RULE_FILES = ("gitleaks.toml", "context.toml")
# generic-api-key: any long word after "key", "token", "auth"... with an entropy floor;
# on the Python standard library it redacts identifiers and time zone names
# ("win32api.RegEnumKey", "Europe/Dublin"), and it costs more than all other rules together.
SKIPPED = frozenset({"generic-api-key"})


@dataclass(frozen=True)
class Allowlist:
    target: str  # "secret", "match" or "line": what `regexes` are tried on
    regex_patterns: tuple[str, ...]
    stopwords: tuple[str, ...]
    path_patterns: tuple[str, ...]
    all_of: bool  # condition = "AND": every kind of check given must hold

    @cached_property
    def regexes(self) -> tuple:
        return tuple(re2.compile(r) for r in self.regex_patterns)

    @cached_property
    def paths(self) -> tuple:
        return tuple(re2.compile(p) for p in self.path_patterns)

    def allows(self, secret: str, match: str, line: str, path: str) -> bool:
        target = {"secret": secret, "match": match, "line": line}[self.target]
        by_regex = any(r.search(target) for r in self.regexes)
        lowered = secret.lower()
        by_stopword = any(w in lowered for w in self.stopwords)
        if not self.all_of:
            return by_regex or by_stopword
        checks = ([any(p.search(path) for p in self.paths)] if self.paths else []) + \
                 ([by_regex] if self.regexes else []) + ([by_stopword] if self.stopwords else [])
        return bool(checks) and all(checks)


@dataclass(frozen=True, eq=False)
class Rule:
    id: str
    pattern: str
    keywords: tuple[str, ...]
    path_pattern: str | None
    entropy: float
    group: int  # 0: the first capture group that matched (the whole match if none)
    allowlists: tuple[Allowlist, ...]

    @cached_property
    def regex(self) -> re2._Regexp:
        return re2.compile(self.pattern)

    @cached_property
    def path(self) -> re2._Regexp | None:
        return None if self.path_pattern is None else re2.compile(self.path_pattern)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    allowlist: Allowlist  # gitleaks' global one: placeholders like ${VAR}, {{ x }}, true
    keywords: tuple[str, ...]
    keyword_set: re2.Set  # one pattern per keyword, in `keywords`' order
    by_keyword: dict[str, tuple[Rule, ...]]
    always: tuple[Rule, ...]  # rules without keywords

    def find(self, text: str, path: str = "") -> list[tuple[int, int, str]]:
        """(start, end, rule id) of every secret in `text`, in order, none overlapping."""
        hits = self.keyword_set.Match(text.lower()) or ()
        candidates = {id(r): r for i in hits for r in self.by_keyword[self.keywords[i]]}
        candidates.update((id(r), r) for r in self.always)
        spans = []
        for rule in candidates.values():
            if rule.path is None or rule.path.search(path):
                spans.extend(self._matches(rule, text, path))
        return _without_overlaps(spans)

    def _matches(self, rule: Rule, text: str, path: str):
        for m in rule.regex.finditer(text):
            group = rule.group or next((i for i in range(1, rule.regex.groups + 1) if m.group(i)), 0)
            secret = m.group(group)
            if not secret or (rule.entropy and shannon_entropy(secret) <= rule.entropy):
                continue
            start, end = m.span(group)
            line = text[text.rfind("\n", 0, start) + 1:_line_end(text, end)]
            if any(a.allows(secret, m.group(0), line, path) for a in (self.allowlist, *rule.allowlists)):
                continue
            yield start, end, rule.id


def _line_end(text: str, at: int) -> int:
    end = text.find("\n", at)
    return len(text) if end < 0 else end


def _without_overlaps(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    kept: list[tuple[int, int, str]] = []
    for start, end, rule in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kept and start < kept[-1][1]:
            continue  # inside or across one already taken: the earlier, longer one wins
        kept.append((start, end, rule))
    return kept


def shannon_entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _allowlist(spec: dict) -> Allowlist:
    return Allowlist(
        target=spec.get("regexTarget", "secret"),
        regex_patterns=tuple(spec.get("regexes", ())),
        stopwords=tuple(w.lower() for w in spec.get("stopwords", ())),
        path_patterns=tuple(spec.get("paths", ())),
        all_of=spec.get("condition", "OR").upper() == "AND",
    )


def _rule(spec: dict) -> Rule:
    return Rule(
        id=spec["id"],
        pattern=spec["regex"],
        keywords=tuple(k.lower() for k in spec.get("keywords", ())),
        path_pattern=spec.get("path"),
        entropy=float(spec.get("entropy", 0.0)),
        group=int(spec.get("secretGroup", 0)),
        allowlists=tuple(_allowlist(a) for a in spec.get("allowlists", ())),
    )


@lru_cache(maxsize=1)
def rule_set() -> RuleSet:
    """Every rule of RULE_FILES that inspects content (path-only rules say nothing about
    text), but SKIPPED; the global allowlist is gitleaks.toml's."""
    configs = [tomllib.loads((FOLDER / name).read_text("utf-8")) for name in RULE_FILES]
    rules = tuple(_rule(spec) for config in configs for spec in config.get("rules", ())
                  if "regex" in spec and spec["id"] not in SKIPPED)
    keywords = tuple(sorted({k for r in rules for k in r.keywords}))
    keyword_set = re2.Set.SearchSet()
    for keyword in keywords:
        keyword_set.Add(re2.escape(keyword))
    keyword_set.Compile()
    return RuleSet(
        rules=rules,
        allowlist=_allowlist(configs[0].get("allowlist", {})),
        keywords=keywords,
        keyword_set=keyword_set,
        by_keyword={k: tuple(r for r in rules if k in r.keywords) for k in keywords},
        always=tuple(r for r in rules if not r.keywords),
    )
