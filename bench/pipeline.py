"""End-to-end benchmark: a large repository through the Dagster job, then reindexes.

    .venv/bin/python bench/pipeline.py                      # stdlib + site-packages
    .venv/bin/python bench/pipeline.py --corpus stdlib --latency 0.05

Builds a corpus on this machine without network (the running Python's standard library,
optionally plus the project's installed site-packages) as a git repository, starts the
loopback OpenAI-compatible server in its own process, and indexes the corpus with
`repo-index index` (the job the UI runs: multiprocess executor, OpenAI provider) in a
fresh DAGSTER_HOME. Then three reindexes: unchanged; one file edited; 1% of the files
edited, added or deleted. For every run it reports wall seconds, the stages' step
seconds, CPU seconds and peak RSS of every step process (from the job's usage hook),
files, chunks, tokens and embedding requests. Prints JSON and writes
bench/results/pipeline[_stdlib][_server].json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from repo_index.core.source.discovery import DEFAULT_EXCLUDED_DIRS  # noqa: E402
from repo_index_tests.services import chroma_server, free_port  # noqa: E402

USAGE = re.compile(r"\] (\S+)\s+step usage: cpu_s=([\d.]+) peak_rss_mb=(\d+)")
DONE = re.compile(r"\] (\S+)\s+done in ([\d.]+)s")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=cwd, check=True,
                   capture_output=True)


def build_corpus(dest: Path, with_site_packages: bool, packages_mb: float | None = None) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [("stdlib", stdlib)]
    if with_site_packages:
        # Not "site-packages": discovery leaves folders of that name out by default.
        sources.append(("packages", Path(sysconfig.get_paths()["purelib"])))
    n = 0
    for name, base in sources:
        budget = packages_mb * 1e6 if packages_mb and name == "packages" else float("inf")
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if name == "stdlib" and rel.parts[0] in ("site-packages", "test", "idlelib"):
                continue
            budget -= path.stat().st_size
            if budget < 0:
                break
            target = dest / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(path, target)
                n += 1
            except OSError:
                continue
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "corpus")
    return n


def indexed_py_files(corpus: Path) -> list[Path]:
    """The corpus's .py files outside the folders discovery leaves out by default."""
    return sorted(p for p in corpus.rglob("*.py") if not DEFAULT_EXCLUDED_DIRS.intersection(p.relative_to(corpus).parts))


def churn(corpus: Path, fraction: float, seed: int = 7) -> dict:
    files = indexed_py_files(corpus)
    rng = random.Random(seed)
    picked = rng.sample(files, max(1, int(len(files) * fraction)))
    third = len(picked) // 3
    for p in picked[:third]:
        p.unlink()
    for p in picked[third:2 * third]:
        p.write_text(p.read_text(errors="replace") + "\n\ndef bench_added_function():\n    return 42\n")
    for i, p in enumerate(picked[2 * third:]):
        p.with_name(f"bench_new_{i}.py").write_text(f"def bench_new_{i}(x):\n    return x * {i}\n")
    git(corpus, "add", "-A")
    git(corpus, "commit", "-qm", "churn")
    return {"deleted": third, "edited": third, "added": len(picked) - 2 * third}


def index(env: dict, server_url: str, profile: Path | None = None) -> dict:
    before = requests_seen(server_url)
    command = [BIN / "repo-index", "index", "corpus"]
    if profile:  # every process of the run, steps included, sampled by py-spy
        command = [BIN / "py-spy", "record", "--subprocesses", "--rate", "50", "--format", "raw",
                   "-o", profile, "--", *command]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stdout + done.stderr)
    out = done.stdout
    steps = {m.group(1): {"cpu_s": float(m.group(2)), "peak_rss_mb": int(m.group(3))} for m in USAGE.finditer(out)}
    for m in DONE.finditer(out):
        steps.setdefault(m.group(1), {})["seconds"] = float(m.group(2))
    stage = lambda key: [v for k, v in steps.items() if k.split(".")[0].split("[")[0] == key]  # noqa: E731
    stages = {name: {"step_seconds": round(sum(s.get("seconds", 0) for s in stage(name)), 2),
                     "cpu_s": round(sum(s.get("cpu_s", 0) for s in stage(name)), 2),
                     "peak_rss_mb": max((s.get("peak_rss_mb", 0) for s in stage(name)), default=0)}
              for name in ("repo_files", "code_chunks", "chunk_embeddings", "vector_collection")}
    summary = re.search(r"files\s+([\d,]+).*?chunks\s+([\d,]+)\s+\(([\d,]+) tokens.*?embeddings\s+([\d,]+) new, ([\d,]+) reused",
                        out, re.S)
    num = lambda s: int(s.replace(",", ""))  # noqa: E731
    return {
        "wall_s": round(wall, 1),
        "stages": stages,
        "steps": steps,
        "files": num(summary.group(1)), "chunks": num(summary.group(2)), "tokens": num(summary.group(3)),
        "embedded": num(summary.group(4)), "reused": num(summary.group(5)),
        "requests": requests_seen(server_url) - before,
    }


def profile_top(raw: Path, n: int = 15) -> dict:
    """The top of a py-spy raw profile: functions by own samples and by inclusive samples."""
    own, inclusive, total = {}, {}, 0
    frame_name = re.compile(r" \(([^:()]*?)(?::\d+)?\)$")
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = []
        for frame in stack.split(";"):
            m = frame_name.search(frame)
            where = m.group(1).split("site-packages/")[-1].split("/lib/python3")[-1] if m else ""
            frames.append(f"{frame[:m.start()] if m else frame} ({where})")
        samples = int(count)
        total += samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    top = lambda d: {k: round(v / total, 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]}  # noqa: E731
    return {"samples": total, "own": top(own), "inclusive": top(inclusive)}


def requests_seen(server_url: str) -> int:
    with urllib.request.urlopen(server_url.removesuffix("/v1") + "/stats", timeout=5) as r:
        return json.load(r)["requests_total"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=["stdlib", "stdlib+site-packages"], default="stdlib+site-packages")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per embedding request")
    ap.add_argument("--dimensions", type=int, default=None)
    ap.add_argument("--chroma", choices=["embedded", "server"], default="embedded",
                    help="server: a `chroma run` on loopback, so the index's memory is the server's, not a step's")
    ap.add_argument("--packages-mb", type=float, default=None,
                    help="copy only the first N MB of site-packages (by path): a smaller large corpus")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--profile", action="store_true",
                    help="profile the full index with py-spy (pip install '.[bench]'); top in the JSON")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="repo-index-bench-"))
    corpus = work / "corpus"
    corpus.mkdir()
    n_files = build_corpus(corpus, args.corpus != "stdlib", args.packages_mb)
    home = work / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "repo_index_tests.fakes.openai_server", "--port", str(port),
                               "--latency", str(args.latency)], cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "DAGSTER_HOME": str(home), "REPO_INDEX_DATA_DIR": str(work / "data"),
           "REPO_INDEX_REGISTRY": str(work / "repositories.yaml"), "OPENAI_API_KEY": "bench",
           "OPENAI_BASE_URL": url}
    if args.dimensions:
        env["REPO_INDEX_EMBEDDING_DIMENSIONS"] = str(args.dimensions)
    stack = contextlib.ExitStack()
    if args.chroma == "server":
        chroma_port = stack.enter_context(chroma_server(work / "chroma-server"))
        env.update(REPO_INDEX_CHROMA_MODE="server", REPO_INDEX_CHROMA_HOST="127.0.0.1",
                   REPO_INDEX_CHROMA_PORT=str(chroma_port))
    try:
        for _ in range(100):
            try:
                requests_seen(url)
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run([BIN / "repo-index", "add", "corpus", str(corpus)], env=env, check=True, capture_output=True)
        results = {"corpus": args.corpus, "packages_mb": args.packages_mb, "corpus_files": n_files, "latency_s": args.latency, "chroma": args.chroma,
                   "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
        raw = work / "profile.txt" if args.profile else None
        results["full"] = index(env, url, raw)
        if raw:
            results["full"]["profile"] = profile_top(raw)
        results["unchanged"] = index(env, url)
        target = next(p for p in indexed_py_files(corpus) if p.stat().st_size > 20_000)
        target.write_text(target.read_text().replace("def ", "def  ", 1))
        git(corpus, "commit", "-qam", "one file")
        results["one_file_edited"] = index(env, url)
        results["churn_1pct"] = {**index_after(churn(corpus, 0.01), env, url)}
        full = results["full"]
        results["ratios"] = {
            "unchanged_wall_vs_full": round(results["unchanged"]["wall_s"] / full["wall_s"], 3),
            "churn_requests_vs_full": round(results["churn_1pct"]["requests"] / max(full["requests"], 1), 4),
        }
    finally:
        server.terminate()
        stack.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    name = "pipeline" + ("_stdlib" if args.corpus == "stdlib" else "") + ("_server" if args.chroma == "server" else "") \
        + (f"_{args.packages_mb:g}mb" if args.packages_mb else "")
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def index_after(changes: dict, env: dict, url: str) -> dict:
    return {"changes": changes, **index(env, url)}


if __name__ == "__main__":
    main()
