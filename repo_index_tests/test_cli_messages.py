"""What the CLI says when something goes wrong: a failed run names the error our code
raised, not Dagster's wrapper (its trace only with --verbose); a query that is not text
says so."""

import subprocess

import pytest

from repo_index.core.search.query import SearchError, search
from repo_index.core.settings import Settings
from repo_index_tests.pipeline import BIN, index_in_process, project_env, register, run, write_python_files


@pytest.mark.slow
def test_a_failed_run_says_the_sources_error_first_and_its_trace_only_with_verbose(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server.base_url)
    source = tmp_path / "checkout"
    source.mkdir()
    register(env, "vanished", source)
    source.rmdir()  # the folder went away after it was registered
    said = f"SourceError: repository 'vanished' (source {str(source)!r}): path {str(source)!r} does not exist"

    quiet = run([BIN / "repo-index", "index", "vanished", "--in-process"], env, check=False)
    assert quiet.returncode == 1
    lines = quiet.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if "FAILED" in line]
    assert failed[0] < 5 and lines[failed[0]].startswith(f"[vanished] repo_files        FAILED: {said}"), quiet.stdout
    [summary] = [line for line in lines if line.startswith("vanished: FAILED after")]
    assert f"— repo_files: {said}" in summary
    both = quiet.stdout + quiet.stderr
    for trace in ("Traceback", "Stack Trace", "DagsterExecutionStepExecutionError", 'File "'):
        assert trace not in both, both

    verbose = run([BIN / "repo-index", "index", "vanished", "--in-process", "--verbose"], env, check=False)
    assert verbose.returncode == 1
    assert f"FAILED: {said}" in verbose.stdout
    # the whole chain with its stacks, under the FAILED line, once
    assert verbose.stdout.count("DagsterExecutionStepExecutionError") == 1
    assert "Stack Trace" in verbose.stdout and "in resolve_source" in verbose.stdout
    assert "Stack Trace" not in verbose.stderr


def test_the_headline_names_what_our_error_leaves_unsaid_and_a_dagster_failure_itself():
    import dagster as dg

    from repo_index.run_errors import headline

    @dg.asset
    def chained():
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise RuntimeError("could not write the collection") from exc

    @dg.asset
    def failure():
        raise dg.Failure("the registry names no such repository")

    def step_error(asset):
        # An instance of its own, entered: Dagster's current definitions-state storage is a
        # context variable an earlier test's instance may have left pointing at itself.
        with dg.instance_for_test() as instance:
            result = dg.materialize([asset], instance=instance, raise_on_error=False)
        [event] = [e for e in result.all_events if e.is_step_failure]
        return event.step_failure_data.error

    assert headline(step_error(chained)) == ("RuntimeError: could not write the collection "
                                             "(caused by OSError: [Errno 28] No space left on device)")
    assert headline(step_error(failure)) == "Failure: the registry names no such repository"
    assert headline(None) == "see the run in the UI"


@pytest.mark.slow
def test_a_query_that_is_not_utf8_is_named_as_such_not_as_a_provider_problem(tmp_path, openai_server):
    env = project_env(tmp_path, openai_server.base_url)
    root = write_python_files(tmp_path / "repo", 3)
    chroma = index_in_process(env, "svc", root)
    openai_server.reset_counters()

    # `repo-index search $'\xff'`: Python sees the byte as a lone surrogate (surrogateescape)
    done = subprocess.run([str(BIN / "repo-index"), "search", b"compute \xff value"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: the query is not valid UTF-8 text (byte 0xff at character 9): "
                                   "pass it as UTF-8"), done.stderr
    assert done.stdout == "" and openai_server.requests_total == 0

    settings = Settings(OPENAI_API_KEY=env["OPENAI_API_KEY"], OPENAI_BASE_URL=env["OPENAI_BASE_URL"])
    with pytest.raises(SearchError, match=r"^the query is not valid UTF-8 text \(U\+D800 at character 1\)"):
        search("\ud800 value", settings=settings, chroma=chroma)
    assert search("compute value", settings=settings, chroma=chroma)  # the same collection answers text
