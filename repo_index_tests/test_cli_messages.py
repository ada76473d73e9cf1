"""What the CLI says when something goes wrong: a failed run names the error our code
raised, not Dagster's wrapper (its trace only with --verbose)."""

import pytest

from repo_index_tests.pipeline import BIN, project_env, register, run


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
        result = dg.materialize([asset], raise_on_error=False)
        [event] = [e for e in result.all_events if e.is_step_failure]
        return event.step_failure_data.error

    assert headline(step_error(chained)) == ("RuntimeError: could not write the collection "
                                             "(caused by OSError: [Errno 28] No space left on device)")
    assert headline(step_error(failure)) == "Failure: the registry names no such repository"
    assert headline(None) == "see the run in the UI"
