"""Redaction benchmark and false-positive count on the running Python's standard library.

    .venv/bin/python bench/redaction.py             # 3 repetitions
    .venv/bin/python bench/redaction.py --reps 5 --show 20

Corpus: every `*.py` under `sysconfig.get_paths()["stdlib"]` (tests included),
site-packages excluded, decoded with `decode_source` as the pipeline does. Ordinary code:
every redaction here is a false positive or test data, listed with its kind and file
(`--show` of them with the redacted text's line) for inspection.

Reported: MB/s of `secrets.redact` over the corpus (best of `--reps`; text in memory, this
process's CPU time), the same for each of its passes, and redactions by kind. Prints JSON
and writes bench/results/redaction.json.
"""

from __future__ import annotations

import argparse
import json
import sysconfig
import time
from collections import Counter
from pathlib import Path

from repo_index.core.source import secrets
from repo_index.core.source.content import decode_source
from repo_index.core.source.secret_rules.engine import rule_set
from repo_index.core.source.secret_rules.kubernetes import redact_kubernetes_secrets

ROOT = Path(__file__).resolve().parents[1]


def stdlib_corpus() -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            out.append((path.relative_to(root).as_posix(), decode_source(path.read_bytes())))
        except (OSError, UnicodeDecodeError):
            pass
    return out


def mb_per_s(corpus, fn, reps: int) -> float:
    size = sum(len(t.encode()) for _, t in corpus) / 1e6
    best = float("inf")
    for _ in range(reps):
        started = time.process_time()
        for path, text in corpus:
            fn(text, path)
        best = min(best, time.process_time() - started)
    return round(size / best, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--show", type=int, default=0, help="print this many redacted lines")
    args = parser.parse_args()
    corpus = stdlib_corpus()
    rules = rule_set()
    by_kind: Counter = Counter()
    where: list[tuple[str, str]] = []
    for path, text in corpus:
        redacted, found = secrets.redact(text, path)
        by_kind.update(found)
        where += [(kind, path) for kind in found]
        for line in [l for l in redacted.splitlines() if "[REDACTED:" in l][:args.show]:
            print(f"{path}: {line.strip()[:160]}")
    result = {
        "files": len(corpus),
        "mb": round(sum(len(t.encode()) for _, t in corpus) / 1e6, 1),
        "rules": len(rules.rules),
        "redact_mb_per_s": mb_per_s(corpus, secrets.redact, args.reps),
        "own_patterns_mb_per_s": mb_per_s(
            corpus, lambda t, p: secrets._redact_own_patterns(t, Counter()), args.reps),
        "kubernetes_mb_per_s": mb_per_s(corpus, lambda t, p: redact_kubernetes_secrets(t), args.reps),
        "rule_files_mb_per_s": mb_per_s(corpus, lambda t, p: rules.find(t, p), args.reps),
        "redactions_by_kind": dict(by_kind),
        "redacted_files": sorted(set(where)),
    }
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "redaction.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
