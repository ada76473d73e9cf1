"""A run with little to do runs its steps in one process: a small repository, or one whose
source has not moved since its index was built. A run that has work spreads its steps
over processes, as before."""

import random
import string

import dagster as dg
import pytest

from repo_index_tests.gitutil import commit_files, make_repo
from repo_index_tests.pipeline import BIN, project_home, register, run

pytestmark = pytest.mark.slow


def distinct_function(i: int) -> str:
    """A function of words no other file uses."""
    rng = random.Random(i)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(7)) for _ in range(4)]
    return f"def {words[0]}_{words[1]}(value):\n    \"\"\"{words[2]} the {words[3]}.\"\"\"\n    return value\n"


def executor_of(home, run_id_prefix: str) -> str:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [record] = [r for r in instance.get_runs(limit=20) if r.run_id.startswith(run_id_prefix)]
        return next(iter(record.run_config.get("execution", {}).get("config", {"multiprocess": {}})))


def index(env, name: str) -> tuple[str, str]:
    """(the CLI's output, the run's id). The smoke query check may fail: the loopback
    server's vectors of 210 files with no word in common are all orthogonal, a graph HNSW
    cannot search greedily (real embeddings are not)."""
    out = run([BIN / "repo-index", "index", name, "--allow-failed-checks"], env).stdout
    run_id = out.split(f"[{name}] run ", 1)[1][:8]
    return out, run_id


def test_small_and_unchanged_repositories_run_in_one_process(tmp_path, openai_server):
    home, env = project_home(tmp_path, openai_server.base_url)
    small = make_repo(tmp_path / "small", {f"m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(3)})
    large = make_repo(tmp_path / "large", {f"pkg/m{i:03d}.py": distinct_function(i) for i in range(210)})
    register(env, "small", small)
    register(env, "large", large)

    out, first = index(env, "small")  # nothing known of it yet: processes, as before
    assert "little to do" not in out and executor_of(home, first) == "multiprocess"
    out, again = index(env, "small")
    assert "[small] little to do (small): its steps run in one process" in out
    assert executor_of(home, again) == "in_process"

    out, first = index(env, "large")
    assert "little to do" not in out and executor_of(home, first) == "multiprocess"
    out, unchanged = index(env, "large")
    assert "[large] little to do (unchanged)" in out and executor_of(home, unchanged) == "in_process"
    requests = openai_server.requests_total
    commit_files(large, {"pkg/m000.py": distinct_function(0) + "\n\ndef added_later():\n    return 1\n"}, "change")
    out, changed = index(env, "large")
    assert "little to do" not in out and executor_of(home, changed) == "multiprocess"
    assert openai_server.requests_total == requests + 1  # the changed chunk only

    # A run in one process indexes exactly what one over processes does.
    status = run([BIN / "repo-index", "status", "--json"], env).stdout
    assert '"state": "in step"' in status and "stale" not in status
