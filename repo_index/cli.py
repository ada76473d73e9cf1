"""The `repo-index` command: edit the registry, index through the Dagster job, search.

Every command uses the project's Dagster instance (DAGSTER_HOME = project root), so the
partitions and runs it creates are the ones the UI and the daemon show.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
from pathlib import Path

import click

from .core.settings import Settings, SettingsError, export_process_defaults, get_settings, set_registry


def _instance():
    from .instance import open_instance

    return open_instance(get_settings())


def _fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


def _say_celery_workers(settings: Settings) -> None:
    """Which workers will run the steps; none is not an error (steps wait in the queue until
    one starts) but should not look like a hang. An unreachable broker stops here."""
    from .jobs import celery_workers

    try:
        workers = celery_workers(settings)
    except ConnectionError as exc:
        _fail(str(exc))
    if workers:
        click.echo(f"steps run on {len(workers)} Celery worker(s): {', '.join(workers)}")
    else:
        click.secho("no Celery worker answers: the steps wait in the queue until one starts "
                    f"(dagster-celery worker start -A dagster_celery.app -y {settings.celery_config})", fg="yellow")


def _load_specs(registry_file: Path):
    """The registry's entries, or exit with the message naming the bad entry."""
    from .core.source.registry import RegistryError, load_registry

    try:
        return load_registry(registry_file)
    except RegistryError as exc:
        _fail(str(exc))


_GC_TUNED: list[bool] = []


def _collect_garbage_less(long_lived: bool) -> None:
    """A command's heap is mostly what its imports leave (Dagster, chromadb, pandas: ~270k
    objects), none of it garbage; Python's default thresholds made the collector traverse
    it in 5 full and ~700 young collections: 0.42 s of a 2.8 s unchanged reindex. Young
    collections every 50,000 allocations instead of 700 leave ~10, and no full one, in a
    small run; a long in-process run still collects. At exit every object is frozen out of
    the collector's sight: tearing the interpreter down ran full collections over all of
    them (0.3 s more). Reference counting still frees them. atexit runs handlers in
    reverse: this one runs after the command's own and before logging's flush.
    The search server (`long_lived`) keeps Python's defaults: it runs for days."""
    if _GC_TUNED:
        return
    _GC_TUNED.append(True)
    if not long_lived:
        gc.set_threshold(50_000, 20, 10)
    atexit.register(gc.freeze)


@click.group()
@click.option("--registry", type=click.Path(dir_okay=False),
              help="Registry file (default: $REPO_INDEX_REGISTRY, else repositories.yaml in the project root).")
@click.pass_context
def main(ctx: click.Context, registry: str | None) -> None:
    """Keep semantic code-search indexes of many repositories fresh."""
    _collect_garbage_less(long_lived=ctx.invoked_subcommand == "serve")
    if registry:
        set_registry(Path(registry).resolve())  # for the processes the command starts, too
    try:
        settings = get_settings()
    except SettingsError as exc:
        _fail(str(exc))
    export_process_defaults(settings)
    ctx.obj = settings


@main.command()
@click.argument("name")
@click.argument("source")
@click.option("--ref", help="Branch, tag or commit to index (git sources).")
@click.option("--include", multiple=True, help="Glob of files to index (repeatable).")
@click.option("--exclude", multiple=True, help="Glob of files to skip (repeatable).")
@click.option("--replace", is_flag=True, help="Replace an entry with the same name.")
@click.pass_obj
def add(settings: Settings, name, source, ref, include, exclude, replace) -> None:
    """Register repository NAME at SOURCE (a local path or a git URL)."""
    registry_file = settings.registry_path()
    from .core.source.registry import RegistryError, RepoSpec, add_spec, is_git_url, load_registry, save_registry, parse_entry
    from .partitions import REPOSITORIES

    if not is_git_url(source) and not source.startswith("-"):
        local = Path(source).expanduser().resolve()
        if not local.is_dir():
            _fail(f"source path {str(local)!r} does not exist or is not a directory")
        source = str(local)
    try:
        entry = RepoSpec(name, source, ref, tuple(include), tuple(exclude)).to_yaml()
        spec = parse_entry(entry)
        specs = add_spec(load_registry(registry_file), spec, replace=replace)
    except RegistryError as exc:
        _fail(str(exc))
    save_registry(registry_file, specs)
    instance = _instance()
    if name not in instance.get_dynamic_partitions(REPOSITORIES):
        instance.add_dynamic_partitions(REPOSITORIES, [name])
    click.echo(f"registered {name} -> {source}{f' @ {ref}' if ref else ''} ({registry_file})")


@main.command()
@click.argument("name")
@click.option("--keep-index", is_flag=True, help="Keep the repository's Chroma collection.")
@click.pass_obj
def remove(settings: Settings, name: str, keep_index: bool) -> None:
    """Unregister repository NAME and delete everything kept for it (unless --keep-index);
    for a NAME already gone from the registry, delete what it left behind."""
    from .core.forget import forget_repository
    from .core.run_lease import LeaseBusy
    from .core.source.registry import RegistryError, load_registry, remove_spec, save_registry, validate_name
    from .partitions import REPOSITORIES
    from .status import run_has_ended

    registry_file = settings.registry_path()
    try:
        registered = any(s.name == name for s in load_registry(registry_file))
        validate_name(name)  # it names files under the data folder: never a path
        if registered or keep_index:
            remove_spec(load_registry(registry_file), name)  # names the problem if it cannot be removed
    except RegistryError as exc:
        _fail(str(exc))
    instance = _instance()

    def unregister() -> None:
        # Read again: the file may have changed while a run of NAME was waited for.
        if registered:
            save_registry(registry_file, remove_spec(load_registry(registry_file), name))
        if name in instance.get_dynamic_partitions(REPOSITORIES):
            instance.delete_dynamic_partition(REPOSITORIES, name)

    if keep_index:
        unregister()
        click.echo(f"removed {name} (its index kept)")
        return
    try:
        # The state goes first and the entry last, under the repository's run lease: if
        # anything fails the entry is still there for `remove` to be run again, and no run of
        # NAME can start in between and write state for a repository no longer registered.
        forgotten = forget_repository(
            settings, name, run_has_ended(instance), then=unregister,
            on_wait=lambda run: click.echo(f"waiting for run {run} of {name} to end before removing it"))
    except LeaseBusy as exc:
        _fail(f"{exc}; nothing was removed")
    if not registered and not forgotten:
        _fail(f"repository {name!r} is not registered and nothing is stored for it")
    if forgotten:
        click.echo(f"deleted: {', '.join(forgotten)}")
    click.echo(f"removed {name}" if registered else f"{name} was not registered; deleted what it had left behind")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(settings: Settings, as_json: bool) -> None:
    """List registered repositories."""
    registry_file = settings.registry_path()
    specs = _load_specs(registry_file)
    if as_json:
        click.echo(json.dumps([s.to_yaml() for s in specs], indent=2))
        return
    if not specs:
        click.echo(f"no repositories registered in {registry_file}; add one with `repo-index add NAME SOURCE`")
    for s in specs:
        extra = "".join([f" @ {s.ref}" if s.ref else "", f"  include={list(s.include)}" if s.include else "",
                         f"  exclude={list(s.exclude)}" if s.exclude else ""])
        click.echo(f"{s.name:24} {s.source}{extra}")


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Index every registered repository.")
@click.option("--max-tokens", type=int, help="Chunk token budget (default follows the embedder).")
@click.option("--max-concurrent", type=int, help="Embedding requests in flight at most.")
@click.option("--estimate-only", is_flag=True, help="Count tokens and cost; send no embedding request.")
@click.option("--allow-failed-checks", is_flag=True, help="Exit 0 when a run succeeded but an asset check failed.")
@click.option("--in-process", is_flag=True, help="Run here even when a daemon runs the queue.")
@click.option("--verbose", is_flag=True, help="Print a failure's whole trace, not only its error.")
@click.pass_obj
def index(settings: Settings, names, all_, max_tokens, max_concurrent, estimate_only, allow_failed_checks,
          in_process, verbose) -> None:
    """Run the indexing job for NAME... (or --all), one Dagster run per repository: queued
    for the daemon when one is running (as the UI launches it), else in this process."""
    registry_file = settings.registry_path()
    from .core.source.registry import RegistryError, get_spec, load_registry
    from .partitions import sync_partitions
    from .progress import run_index

    try:
        specs = load_registry(registry_file)
        if all_:
            names = tuple(s.name for s in specs)
        for name in names:
            get_spec(specs, name)
    except RegistryError as exc:
        _fail(str(exc))
    if not names:
        _fail("name one or more repositories, or pass --all")
    if settings.executor == "celery":
        _say_celery_workers(settings)
    instance = _instance()
    sync_partitions(instance, [s.name for s in specs])
    ops: dict = {}
    if max_tokens:
        ops["code_chunks"] = {"ops": {"split_files": {"config": {"max_tokens": max_tokens}}}}
    embed_cfg = {k: v for k, v in {"max_concurrent": max_concurrent, "estimate_only": estimate_only or None}.items() if v}
    if embed_cfg:
        ops["chunk_embeddings"] = {"config": embed_cfg}
    # An estimate stops before the collection: there are no vectors to store.
    stop_at = "chunk_embeddings" if estimate_only else None
    failures = run_index(instance, list(names), {"ops": ops} if ops else None, echo=click.echo, stop_at=stop_at,
                         specs={s.name: s for s in specs}, registry_file=registry_file,
                         allow_failed_checks=allow_failed_checks, in_process=in_process, verbose=verbose)
    if failures:
        _fail(f"{len(failures)} of {len(names)} repositories failed (a run or one of its checks): {', '.join(failures)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Each repository's indexed commit, chunk count, and whether its collection is in step."""
    from .core.index.client import ChromaSettings
    from .status import repository_status

    registry_file = settings.registry_path()
    specs = _load_specs(registry_file)
    rows = repository_status(_instance(), specs, registry_file, ChromaSettings.from_settings(settings))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no repositories registered")
    click.echo(f"{'repository':24} {'indexed':12} {'head':12} {'chunks':>8}  state")
    for r in rows:
        click.echo(f"{r['name']:24} {(r['indexed_commit'] or '-')[:12]:12} {(r['head'] or '-')[:12]:12} "
                   f"{r['records']:>8}  {r['state']}")


@main.command()
@click.argument("query")
@click.option("--repo", "repos", multiple=True, help="Repository to search (repeatable; default all).")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 200))
@click.option("--language", help="Only chunks in this language (e.g. python).")
@click.option("--path", "path_glob", help="Only files matching this glob (e.g. 'src/*.py').")
@click.option("--mode", type=click.Choice(["hybrid", "vector", "lexical"]), default="hybrid", show_default=True,
              help="Rank by vectors and words fused, by vectors only, or by words only (BM25).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def search(settings: Settings, query, repos, k, language, path_glob, mode, as_json) -> None:
    """Code search: ranked hits as `path:start-end  symbol  score` with the lines that matched.
    Asks the server at $REPO_INDEX_SERVER_URL when it is set, else searches in this process."""
    args = dict(query=query, repositories=list(repos) or None, k=k, language=language, path_glob=path_glob, mode=mode)
    if settings.server_url:
        from .serving.client import ServerError, remote_search

        try:
            answer = remote_search(settings.server_url, **args)
        except ServerError as exc:
            _fail(str(exc))
    else:
        from .core.search.query import SearchError
        from .core.source.at_commit import CodeUnavailable
        from .serving.service import IndexService

        service = IndexService(settings, deadline_s=None)  # a command waits: for a sync writing, too
        try:
            answer = service.search(**args, notice=lambda message: click.echo(message, err=True))
        except (SearchError, CodeUnavailable) as exc:
            _fail(str(exc))
        finally:
            service.close()
    _print_hits(answer, as_json)


def _print_hits(answer: dict, as_json: bool) -> None:
    for repo, note in answer["unavailable"].items():  # searched the others: say which was left out, on stderr
        click.secho(f"warning: {repo} not searched: {note}", fg="yellow", err=True)
    hits = answer["hits"]
    for repo in dict.fromkeys(h["repository"] for h in hits if h["stale"]):
        reason = next(h["stale_reason"] for h in hits if h["repository"] == repo)
        click.secho(f"warning: the index of {repo} is stale: {reason}", fg="yellow", err=True)
    if as_json:
        click.echo(json.dumps(hits, indent=2))
        return
    if not hits:
        click.echo("no hits")
    several = len(answer["searched"]) > 1
    for hit in hits:
        where = f"{hit['repository']}/" if several else ""
        stale = "  (stale)" if hit["stale"] else ""
        click.secho(f"{where}{hit['path']}:{hit['start_line']}-{hit['end_line']}  {hit['symbol'] or '-'}  "
                    f"{hit['score']:.3f}{stale}", bold=True)
        snippet = hit["snippet"]
        width = len(str(snippet["end_line"]))
        for number, line in enumerate(snippet["text"].split("\n"), snippet["start_line"]):  # the file's lines
            click.echo(f"  {number:>{width}}  {line[:100]}")
        click.echo()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--stdio", is_flag=True, help="Serve MCP over stdin/stdout instead (what a coding assistant starts).")
@click.option("--deadline", "deadline_s", default=10.0, show_default=True, type=click.FloatRange(0.1, 600),
              help="Seconds a search over several repositories waits before answering with those that finished.")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, stdio: bool, deadline_s: float) -> None:
    """Serve search from one long-lived process that keeps the models loaded: a JSON API
    (/search, /repositories, /code) and MCP (streamable HTTP at /mcp, or --stdio)."""
    from .serving.run import serve_http, serve_stdio
    from .serving.service import IndexService

    service = IndexService(settings, deadline_s=deadline_s)
    try:
        if stdio:
            serve_stdio(service)
        else:
            serve_http(service, host, port, echo=lambda line: click.echo(line, err=True))
    finally:
        service.close()


if __name__ == "__main__":
    main()
