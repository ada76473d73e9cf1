"""Ranks to R@k and MRR@10, with seeded bootstrap intervals over the queries."""

from __future__ import annotations

import numpy as np

CUTOFFS = (1, 5, 10)
MRR_AT = 10


def first_correct_rank(hits, path: str, line: int) -> int | None:
    """1-based rank of the first hit whose file is `path` and whose lines hold `line`."""
    for rank, hit in enumerate(hits, 1):
        if hit.path == path and hit.start_line <= line <= hit.end_line:
            return rank
    return None


def first_inside_rank(hits, path: str, first: int, last: int) -> int | None:
    """1-based rank of the first hit overlapping lines `first..last` of `path`: the lenient
    rule, which also takes a piece of the function's body."""
    for rank, hit in enumerate(hits, 1):
        if hit.path == path and hit.start_line <= last and first <= hit.end_line:
            return rank
    return None


def per_query_scores(ranks: list[int | None]) -> dict[str, np.ndarray]:
    """One row per query: 1/0 for each R@k, the reciprocal rank (0 past MRR_AT) for MRR."""
    r = np.array([rank or np.inf for rank in ranks], dtype=float)
    scores = {f"R@{k}": (r <= k).astype(float) for k in CUTOFFS}
    scores[f"MRR@{MRR_AT}"] = np.where(r <= MRR_AT, 1.0 / r, 0.0)
    return scores


def bootstrap_indexes(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) query indexes drawn with replacement; shared by every mode so that
    differences between modes are paired."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def summarize(scores: dict[str, np.ndarray], draws: np.ndarray) -> dict[str, dict]:
    """metric -> {mean, lo, hi}: the 95% percentile interval of the bootstrap means."""
    out = {}
    for name, values in scores.items():
        means = values[draws].mean(axis=1)
        out[name] = {"mean": round(float(values.mean()), 4),
                     "lo": round(float(np.percentile(means, 2.5)), 4),
                     "hi": round(float(np.percentile(means, 97.5)), 4)}
    return out


def paired_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], draws: np.ndarray) -> dict[str, dict]:
    """a - b per metric over the same queries, with its paired bootstrap interval."""
    return summarize({name: a[name] - b[name] for name in a}, draws)


def latency_ms(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"median": round(float(np.median(ms)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
            "n": len(seconds)}
