"""The ``dagbox`` command line: parse, call, map outcomes to exit codes.

Exit codes (docs/format.md, D8): 0 success; 1 the run failed; 2 usage
error or invalid DAG file; 3 the container engine or another required piece
of the environment is unavailable; 130 interrupted.

Commands are synchronous (typer does not await coroutines). Heavy modules are
imported inside the command that needs them, so ``dagbox validate`` never
loads aiodocker or aiohttp and starts fast.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dagbox import __version__
from dagbox.modes import OutputMode

if TYPE_CHECKING:  # the commands import these when they run (startup time)
    from dagbox.bench.run import BenchOptions
    from dagbox.cluster.driver import Cluster
    from dagbox.engine.scheduler import Scheduler
    from dagbox.engine.state import RunResult
    from dagbox.live import Panel
    from dagbox.plan import Plan, PlannedStep
    from dagbox.records import HandlerRecord, RunRecord, StepRecord
    from dagbox.report.read import Output
    from dagbox.runner import RunRequest, Sink
    from dagbox.spec import Loaded


class LogFormat(StrEnum):
    text = "text"
    json = "json"


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    name="dagbox",
    help="Run Dagu-format YAML DAGs: shell steps and AI coding-agent CLIs, on the host or in Docker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dagbox {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """dagbox: an asyncio-native executor for Dagu-format YAML DAGs."""


DagFile = Annotated[Path, typer.Argument(help="A Dagu-format DAG file (YAML).", show_default=False)]


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _check_settings() -> None:
    """dagbox's own environment variables, checked before anything runs (exit 2 if wrong)."""
    from dagbox.settings import SettingError, current

    try:
        current()
    except SettingError as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_USAGE) from None


def _load(file: Path) -> Loaded:  # or exits 2 after printing the problems
    from dagbox.spec import DagError, load

    try:
        loaded = load(file)
    except DagError as exc:
        for issue in exc.issues:
            if issue.severity != "notice":
                _err(str(issue))
        raise typer.Exit(EXIT_USAGE) from None
    for warning in loaded.warnings:
        if warning.severity == "warning":
            _err(str(warning))
    return loaded


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="DAG files to check.", show_default=False)],
    show_unresolved: Annotated[
        bool,
        typer.Option(
            "--show-unresolved",
            help="Also say which references only a run can give a value "
            "(${params.X} without a default, ${env.X} the file does not set).",
        ),
    ] = False,
) -> None:
    """Check DAG files without running anything.

    Prints one "FILE: ok" line per valid file on stdout, and every problem as
    FILE:LINE:COL: PATH: MESSAGE on stderr. Exits 2 if any file is invalid.
    """
    from dagbox.spec import DagError, load

    failed = False
    for file in files:
        try:
            loaded = load(file)
        except DagError as exc:
            failed = True
            for issue in exc.issues:
                if issue.severity != "notice" or show_unresolved:
                    _err(str(issue))
            continue
        for warning in loaded.warnings:
            if warning.severity == "warning" or show_unresolved:
                _err(str(warning))
        typer.echo(f"{file}: ok")
    raise typer.Exit(EXIT_USAGE if failed else EXIT_OK)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the DAG format (for YAML language servers)."""
    import json

    from dagbox.spec.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def parse_param_overrides(
    params: str | None,
    pairs: list[str],
    trailing: list[str],
    files: list[Path] | None = None,
) -> dict[str, str]:
    """``--params "A=1 B=2"``, ``-p A=1``, ``FILE -- A=1`` and ``--params-file F`` -> {name: value}.

    Positional values (no ``NAME=``) become ``1``, ``2``, ... as in Dagu. A params file
    holds one ``NAME=value`` per line, the value taken as written to the end of the line
    (blank lines and ``#`` comments skipped): a way to pass a secret that is not on
    dagbox's own command line, which every user of the machine can read. Anything that
    is not a param (an unterminated quote, a name such as ``weird key``) is a
    ParamsTextError, never silently dropped.
    """
    from dagbox.params import PARAM_NAME, ParamsTextError, numbered, parse_params_text

    items: list[tuple[str | None, str]] = []
    for file in files or []:
        items.extend(_params_file(file))
    items.extend(parse_params_text(params or ""))
    for pair in [*pairs, *trailing]:
        key, sep, text = pair.partition("=")
        items.append((key, text) if sep else (None, pair))
    for name, _ in items:
        if name is not None and not PARAM_NAME.match(name):
            raise ParamsTextError(
                f"invalid param name {name!r}: use letters, digits and _, starting with a letter"
            )
    return numbered(items)


def _params_file(file: Path) -> list[tuple[str | None, str]]:
    from dagbox.params import ParamsTextError

    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamsTextError(f"cannot read --params-file {file}: {exc}") from None
    out: list[tuple[str | None, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ParamsTextError(f"{file}:{number}: a line of a params file is NAME=value")
        out.append((name.strip(), value))
    return out


def _checked(plan: Plan, loaded: Loaded) -> Plan:
    """``plan``, once its params' values are ones their declarations allow (exit 2 if not)."""
    from dagbox.params import ParamValueError, check

    try:
        check(loaded.dag.params, plan.params)
    except ParamValueError as exc:
        _err(f"dagbox: {loaded.path}: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    return plan


def _overrides(
    params: str | None, pairs: list[str], trailing: list[str], files: list[Path]
) -> dict[str, str]:
    from dagbox.params import ParamsTextError

    try:
        return parse_param_overrides(params, pairs, trailing, files)
    except ParamsTextError as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_USAGE) from None


ParamsFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--params-file",
        help="Params from a file, one NAME=value per line (keeps secrets off the command line).",
        show_default=False,
    ),
]


@app.command()
def run(
    file: DagFile,
    trailing: Annotated[
        list[str] | None, typer.Argument(help="Params after --, as NAME=value.", show_default=False)
    ] = None,
    params: Annotated[
        str | None,
        typer.Option("--params", help='Params as one string: "A=1 B=2" (or positional "a b").'),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="One param, NAME=value; repeatable.")
    ] = None,
    params_file: ParamsFiles = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Use this run id instead of a generated one.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--jobs",
            min=0,
            help="Run at most N steps at once (overrides max_active_steps; 0: as many as open files allow).",
        ),
    ] = None,
    output: Annotated[
        OutputMode,
        typer.Option("--output", "-o", help="How to show step output.", case_sensitive=False),
    ] = OutputMode.prefix,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="json: also stream each harness attempt's journal events to stderr.",
            case_sensitive=False,
        ),
    ] = LogFormat.text,
) -> None:
    """Run a DAG and stream its output.

    Exits 0 when the run succeeded (or its preconditions were not met), 1 when it
    failed, 2 for an invalid DAG or usage error, 130 when interrupted.
    """
    import anyio

    from dagbox.compiler import compile
    from dagbox.layout import new_run_id
    from dagbox.live import Panel, StepRows, drawn, shown
    from dagbox.records import JsonLog
    from dagbox.runner import RunExists, RunRequest, execute
    from dagbox.terminal import Terminal

    _check_settings()
    if run_id is not None:
        _check_run_id(run_id)
    loaded = _load(file)
    overrides = _overrides(params, param or [], trailing or [], params_file or [])
    panel = Panel(None, enabled=None if output is OutputMode.live else False)
    request = RunRequest(
        plan=_checked(compile(loaded.dag, overrides, loaded.path, loaded.dags), loaded),
        run_id=run_id or new_run_id(),
        max_active=jobs,
        sinks=[Terminal(output, panel.above)],
    )
    if panel.enabled:
        request.sinks.append(StepRows(panel))
        request.warn = panel.say  # stderr would land on the panel
    if log_format is LogFormat.json:
        request.sinks.append(JsonLog(panel.beside))
    request.child_sinks = _child_sinks(output, log_format, panel)
    from dagbox.runtimes.container_engine import ContainerEngineUnavailable

    schedulers: list[Scheduler] = []
    request.on_scheduler = schedulers.append
    import gc

    gc.freeze()  # what importing made lives as long as dagbox: the collector skips it
    try:
        with _adopting(), shown(panel):
            result = anyio.run(drawn, panel, lambda: execute(request))
            first, runs, suffix = request.run_id, 1, 1
            while (delay := _run_again(request.plan, result, runs)) is not None:
                runs += 1
                suffix = _free_suffix(request, first, suffix + 1)
                request.run_id = f"{first}.{suffix}"
                panel.say(
                    f"the run failed; its retry_policy runs it again as {request.run_id}"
                    + (f" in {delay:g}s" if delay else "")
                )
                panel.draw()
                time.sleep(delay)  # a Ctrl-C here exits 130, as anywhere in a run
                result = anyio.run(drawn, panel, lambda: execute(request))
    except ContainerEngineUnavailable as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    except RunExists as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:  # a bug in dagbox (its record has ended): the traceback, masked
        _internal_error(exc, schedulers[0].ctx.secrets.redactor().text if schedulers else str)
    if result.record_error is not None:
        _err(f"dagbox: the run's record or output is incomplete: {result.record_error}")
    raise typer.Exit(result.exit_code)


def _child_sinks(
    output: OutputMode, log_format: LogFormat, panel: Panel
) -> Callable[[str], list[Sink]]:
    """The sinks of a child run (a sub-DAG call): its lines labelled ``solve[12]/step``."""
    from dagbox.live import StepRows
    from dagbox.records import JsonLog
    from dagbox.terminal import Terminal

    def sinks(label: str) -> list[Sink]:
        made: list[Sink] = []
        if panel.enabled:
            made.append(StepRows(panel, f"{label}/"))
        if output is not OutputMode.quiet:  # quiet shows the root's summary alone
            made.append(Terminal(output, panel.above, label=f"{label}/", summary=False))
        if log_format is LogFormat.json:
            made.append(JsonLog(panel.beside))
        return made

    return sinks


def _free_suffix(request: RunRequest, first: str, suffix: int) -> int:
    """The first ``N >= suffix`` such that no run ``first.N`` of the DAG is recorded yet
    (``--run-id`` given again after an earlier run had been retried)."""
    from dagbox.layout import RunLayout

    while RunLayout.for_run(request.plan.dag, f"{first}.{suffix}", request.home).dir.exists():
        suffix += 1
    return suffix


def _run_again(plan: Plan, result: RunResult, runs: int) -> float | None:
    """The DAG's ``retry_policy`` after ``runs`` runs: how long to wait before the next,
    when the last failed and the limit allows one more (the run id of run N is the
    first's with ``.N``); None: no more."""
    from dagbox.engine.retry import retry_delay
    from dagbox.values import Scope

    policy = plan.retry_policy
    if policy is None or result.status != "failed" or result.interrupted:
        return None
    if runs > int(policy.limit):
        return None
    return retry_delay(policy, runs, Scope({}, {}))


def _dag_name_of(file: Path) -> str:
    """The DAG name a file runs under, even if the file no longer validates."""
    from dagbox.spec import DagError, load

    try:
        return load(file).dag.name or file.stem
    except DagError:
        return file.stem


def _internal_error(exc: Exception, redact: Callable[[str], str]) -> NoReturn:
    """A bug in dagbox: its traceback on stderr, secrets masked (an exception's message can
    hold any value the code was handling), and exit 1."""
    import traceback

    text = redact("".join(traceback.format_exception(exc)).rstrip())
    _err(f"dagbox: internal error, please report it:\n{text}")
    raise typer.Exit(EXIT_FAILED) from None


@contextlib.contextmanager
def _adopting() -> Iterator[None]:
    """This process adopts what its steps' processes orphan (``setsid`` daemons), so that it
    can stop them: each run stops its own as it ends, and whatever is left (a process
    that cleared its environment) is stopped when the command is done."""
    from dagbox.runtimes import children

    children.become_subreaper()
    try:
        yield
    finally:
        stopped = children.stop_adopted()
        if stopped:
            _err(f"dagbox: stopped {len(stopped)} process(es) the run's steps left running")


def _check_run_id(run_id: str) -> None:
    from dagbox.layout import run_id_problem

    problem = run_id_problem(run_id)
    if problem is not None:
        _err(f"dagbox: {problem}")
        raise typer.Exit(EXIT_USAGE)


def _pick_run(run_id: str | None, last: Path | None) -> tuple[RunRecord, Path]:
    """The run named, else the latest (of ``last``'s DAG); exits 2 when there is none."""
    from dagbox.records import RecordError, all_runs, find_run

    if run_id is not None:
        _check_run_id(run_id)
        try:
            found = find_run(run_id)
        except RecordError as exc:
            _err(f"dagbox: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        if found is None:
            _err(f"no run with id {run_id}")
            raise typer.Exit(EXIT_USAGE)
        return found
    runs = all_runs(_dag_name_of(last) if last is not None else None)
    if not runs:
        _err("no runs recorded yet" + (f" for {last}" if last else ""))
        raise typer.Exit(EXIT_USAGE)
    return runs[-1]


@app.command()
def status(
    run_id: Annotated[
        str | None, typer.Argument(help="A run id (default: the latest run).")
    ] = None,
    last: Annotated[
        Path | None,
        typer.Option("--last", help="The latest run of this DAG file.", show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run record (run.json).")
    ] = False,
) -> None:
    """Show a run's record: its status and every step's."""
    from dagbox.layout import RunLayout
    from dagbox.records import shown_status
    from dagbox.terminal import first_line, printable

    record, run_dir = _pick_run(run_id, last)
    if as_json:
        typer.echo(RunLayout(run_dir).record.read_text().rstrip())
        return
    took = f" in {record.duration_sec:.2f}s" if record.duration_sec is not None else ""
    typer.echo(f"run {record.run_id} of {printable(record.dag)}: {shown_status(record)}{took}")
    typer.echo(f"  file: {printable(record.file)}\n  started: {record.started_at}")
    if record.error:
        typer.echo(f"  error: {first_line(record.error)}")
    if record.parent_run_id:
        typer.echo(
            f"  called by: run {record.parent_run_id}, step {printable(record.parent_step or '')}"
        )
    _step_rows(record, run_dir, "  ")
    typer.echo(f"  record: {run_dir}")


#: How many child runs of one step ``dagbox status`` lists (failed ones first).
_SHOWN_CHILDREN = 10


def _step_rows(record: RunRecord, run_dir: Path, indent: str) -> None:
    """Each step's line; under a step that called sub-DAGs, its child runs, as a tree."""
    from dagbox.records import child_runs, shown_status
    from dagbox.terminal import first_line, printable

    children: dict[str, list[tuple[RunRecord, Path]]] = {}
    for pair in child_runs(run_dir):
        children.setdefault(pair[0].parent_step or "", []).append(pair)
    rows: list[tuple[str, StepRecord | HandlerRecord, str]] = [
        (printable(s.name), s, s.name) for s in record.steps
    ]
    rows += [(f"({k})", h, "on" + k.capitalize()) for k, h in record.handlers.items()]
    width = max((len(name) for name, _, _ in rows), default=4)
    for name, step, step_name in rows:
        code = f"exit {step.exit_code}" if step.exit_code is not None else ""
        retries = getattr(step, "retry_count", 0)
        extra = f"  {retries} retries" if retries else ""
        why = f"  {first_line(step.error)}" if step.error and step.status != "succeeded" else ""
        typer.echo(f"{indent}{name:<{width}}  {step.status:<19} {code:<8}{extra}{why}")
        called = children.get(step_name, [])
        if not called:
            continue
        counts: dict[str, int] = {}
        for called_record, _ in called:
            counts[called_record.status] = counts.get(called_record.status, 0) + 1
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        typer.echo(f"{indent}  ↳ {len(called)} child run{'s' * (len(called) != 1)}: {tally}")
        shown = sorted(called, key=lambda c: c[0].status == "succeeded")[:_SHOWN_CHILDREN]
        for child, child_dir in shown:
            error = f"  {first_line(child.error)}" if child.error else ""
            typer.echo(f"{indent}    run {child.run_id}: {shown_status(child)}{error}")
            _step_rows(child, child_dir, indent + "      ")
        if len(called) > len(shown):
            typer.echo(f"{indent}    … {len(called) - len(shown)} more (dagbox status RUN_ID)")


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="A run id.", show_default=False)],
    step: Annotated[str | None, typer.Argument(help="One step (default: every step).")] = None,
    stderr: Annotated[
        bool, typer.Option("--stderr", help="Show stderr instead of stdout.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
) -> None:
    """Print the logs of a run's steps (the attempt that decided each step's status)."""
    from dagbox.logview import show_logs

    record, run_dir = _pick_run(run_id, None)
    raise typer.Exit(show_logs(record, run_dir, step, "stderr" if stderr else "stdout", follow))


@app.command()
def history(
    file: Annotated[Path | None, typer.Argument(help="Only runs of this DAG file.")] = None,
    limit: Annotated[int, typer.Option("-n", min=1, help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run.")] = False,
) -> None:
    """List recorded runs, newest first."""
    import msgspec

    from dagbox.records import all_runs, shown_status
    from dagbox.terminal import printable

    runs = all_runs(_dag_name_of(file) if file is not None else None)[-limit:][::-1]
    for record, _ in runs:
        if as_json:
            typer.echo(msgspec.json.encode(record).decode())
            continue
        took = f"{record.duration_sec:.2f}s" if record.duration_sec is not None else "-"
        typer.echo(
            f"{record.run_id}  {printable(record.dag):<20} {shown_status(record):<19} "
            f"{record.started_at}  {took}"
        )


@app.command()
def bench(
    file: DagFile,
    repeat: Annotated[
        int, typer.Option("--repeat", "-n", min=1, help="Runs per cell and task.")
    ] = 1,
    matrix: Annotated[
        list[str] | None,
        typer.Option(
            "--matrix", "-m", help="A param and its values, KEY=v1,v2; repeatable (cross product)."
        ),
    ] = None,
    tasks: Annotated[
        Path | None, typer.Option("--tasks", help="JSON lines, one object of params per task.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs at once.")
    ] = 4,
    max_containers: Annotated[
        int | None,
        typer.Option(
            "--max-containers", min=1, help="Containers in creation and start at once, across runs."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where results.jsonl and summary.json go.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip runs whose exact inputs already have a result.")
    ] = False,
    output: Annotated[
        OutputMode,
        typer.Option("--output", "-o", help="Which run output to show.", case_sensitive=False),
    ] = OutputMode.failures,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run on a Ray cluster: HOST:6379, ray://HOST:10001, or auto ($RAY_ADDRESS). "
            "Needs dagbox\\[ray]; see docs/cluster.md.",
        ),
    ] = None,
) -> None:
    """Run a DAG many times over a matrix of params, and summarise the outcomes.

    Each cell of the matrix (and each task), times --repeat, is one run. Results go to
    OUT/results.jsonl (one line per run) and OUT/summary.json; a table per cell ends the
    output: success rate and pass@k over runs that infrastructure did not spoil, durations
    and dagbox's own overhead per run.
    """
    import anyio

    from dagbox.bench.jobs import BenchInputError, jobs, load_tasks, parse_matrix
    from dagbox.bench.run import BenchOptions, run_bench
    from dagbox.cluster.driver import ClusterUnavailable
    from dagbox.report.text import cell_table
    from dagbox.runtimes.container_engine import ContainerEngineUnavailable

    _check_settings()
    loaded = _load(file)
    try:
        axes = parse_matrix(matrix or [])
        task_list = load_tasks(tasks) if tasks is not None else None
    except BenchInputError as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    _check_bench_params(loaded, axes, task_list)
    options = BenchOptions(
        out=_results_folder(out or Path("dagbox-bench") / (loaded.dag.name or "dag")),
        repeat=repeat,
        concurrency=concurrency,
        max_containers=max_containers,
        resume=resume,
        output=output,
    )
    if cluster is not None:
        options.cluster = _join_cluster(cluster, loaded, options, axes, tasks, task_list)
    try:
        with _adopting(), _leaving(options.cluster):
            report = anyio.run(
                run_bench,
                loaded,
                lambda ids: jobs(loaded.dag, axes, task_list, repeat, ids),
                options,
            )
    except (ContainerEngineUnavailable, ClusterUnavailable) as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    except BenchInputError as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:  # a bug in dagbox: the traceback, with what is known secret masked
        import os

        from dagbox.secrets import Redactor, secret_values

        tasks_params = [params for _, params in task_list or []]
        matrix_params = [{name: value} for name, values in axes for value in values]
        redactor = Redactor(secret_values(os.environ, *tasks_params, *matrix_params))
        _internal_error(exc, redactor.text)
    typer.echo(cell_table(report.rows, repeat))
    typer.echo(
        f"{report.ran} runs now, {report.skipped} already done (--resume), {report.planned} in all; results: {options.out / 'results.jsonl'}"
    )
    if report.error is not None:
        _err(f"dagbox: bench stopped early: {report.error}")
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.error is not None:
        raise typer.Exit(1)


def _join_cluster(
    address: str,
    loaded: Loaded,
    options: BenchOptions,
    axes: list[tuple[str, list[str]]],
    tasks_file: Path | None,
    tasks: list[tuple[str, dict[str, str]]] | None,
) -> Cluster:
    """Join the Ray cluster for ``dagbox bench --cluster`` (exit 3 in one line when it
    cannot be had), with the DAG's folder as every node's working dir."""
    from dagbox.bench.jobs import image_references
    from dagbox.cluster.driver import Cluster, ClusterUnavailable, address_of, connect, held_back
    from dagbox.compiler import compile
    from dagbox.layout import home
    from dagbox.secrets import Redactor

    try:
        import ray  # noqa: F401
    except ImportError:
        _err("dagbox: --cluster needs Ray: pip install 'dagbox[ray]'")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    secrets = _secret_params(axes, tasks or [])
    folder = loaded.path.parent.resolve()
    if folder in (Path.home().resolve(), Path("/")):
        _err(
            f"dagbox: {loaded.path} is in {folder}, which would all go to the cluster: "
            'give the DAG a folder of its own (docs/cluster.md, "The DAG\'s folder")'
        )
        raise typer.Exit(EXIT_USAGE)
    plan = compile(loaded.dag, {}, loaded.path, loaded.dags)
    also = [options.out, home(), *([tasks_file] if tasks_file else [])]
    redactor = Redactor(secrets.values())
    try:
        connect(
            address_of(address),
            folder,
            held_back(plan, folder, also),
            options.out / "ray-driver.log",
            lambda text: redactor.text(text) or text,
        )
    except ClusterUnavailable as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    return Cluster(
        options.concurrency,
        options.max_containers,
        plan.uses_containers(),
        image_references(loaded.dag),  # each node looks up those it can (no templates)
        loaded.path.name,
        secrets,
    )


def _secret_params(
    axes: list[tuple[str, list[str]]], tasks: list[tuple[str, dict[str, str]]]
) -> dict[str, str]:
    """The value of each secret-named param a bench gives; exit 2 when one has several
    (a node has one value per name, and values never go to nodes)."""
    from dagbox.secrets import is_secret_name

    values: dict[str, set[str]] = {}
    for name, choices in axes:
        values.setdefault(name, set()).update(choices)
    for _, task in tasks:
        for name, value in task.items():
            values.setdefault(name, set()).add(value)
    secrets = {name: seen for name, seen in values.items() if is_secret_name(name)}
    for name, seen in secrets.items():
        if len(seen) > 1:
            _err(
                f"dagbox: {name} takes {len(seen)} values, and secret values never go to a "
                'cluster\'s nodes: each node gives its own (docs/cluster.md, "Credentials")'
            )
            raise typer.Exit(EXIT_USAGE)
    return {name: seen.pop() for name, seen in secrets.items()}


@contextlib.contextmanager
def _leaving(cluster: Cluster | None) -> Iterator[None]:
    """Leave the cluster when the bench ends: Ray stops the bench's agents."""
    try:
        yield
    finally:
        if cluster is not None:
            from dagbox.cluster.driver import disconnect

            disconnect()


def _check_bench_params(
    loaded: Loaded,
    axes: list[tuple[str, list[str]]],
    tasks: list[tuple[str, dict[str, str]]] | None,
) -> None:
    """Every run's params (task x matrix cell) fit their declarations, before any run
    starts (exit 2 naming the task and cell of the first that does not)."""
    import itertools

    from dagbox.params import ParamValueError, check
    from dagbox.secrets import is_secret_name

    declared = loaded.dag.params
    defaults = {p.name: p.default for p in declared if p.default is not None}
    names = [name for name, _ in axes]
    for label, task in tasks or [("", {})]:
        for combo in itertools.product(*(values for _, values in axes)):
            pairs = list(zip(names, combo, strict=True))
            try:
                check(declared, {**defaults, **task, **dict(pairs)})
            except ParamValueError as exc:
                cell = [f"{n}={'***' if is_secret_name(n) else v}" for n, v in pairs]
                where = ", ".join([*([f"task {label}"] if label else []), *cell])
                _err(f"dagbox: {loaded.path}: {exc}" + (f" (in {where})" if where else ""))
                raise typer.Exit(EXIT_USAGE) from None


def _results_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _err(f"dagbox: cannot use --out {out} as the folder for results: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    return out


@app.command()
def report(
    outputs: Annotated[
        list[str],
        typer.Argument(
            help="Bench outputs (--out folders, or results.jsonl files) to report on and compare.",
            show_default=False,
        ),
    ],
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write one self-contained HTML file with charts (needs dagbox\\[report]).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the numbers as JSON instead of tables.")
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="The cell every other cell is compared with."),
    ] = None,
) -> None:
    """Report on bench results: success rates with 95% intervals, pass@k, durations,
    failure classes, tokens and cost; and compare cells or outputs, paired by task.

    Several outputs name their cells OUT/cell. How the numbers are made: docs/report.md.
    Exits 2 for an output that cannot be read, 3 when --html lacks the report extra.
    """
    import json

    from dagbox.report.numbers import BaselineError
    from dagbox.report.numbers import report as numbers
    from dagbox.report.read import ReportInputError, read_outputs
    from dagbox.report.text import render

    try:
        read = read_outputs(outputs)
        document = numbers(read, baseline)
    except (ReportInputError, BaselineError) as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if html is not None:
        _write_html(html, read, document)
    typer.echo(json.dumps(document, indent=2) if as_json else render(document))


def _write_html(target: Path, outputs: list[Output], document: dict[str, Any]) -> None:
    import errno

    try:
        import vl_convert  # noqa: F401  # the charts' JavaScript, bundled into the page

        from dagbox.report.html import page
    except ImportError as exc:
        _err(f"dagbox: --html needs the report extra: pip install 'dagbox[report]' ({exc})")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    try:
        target.write_text(page(outputs, document, target.parent.absolute()), encoding="utf-8")
    except OSError as exc:
        _err(f"dagbox: cannot write {target}: {exc.strerror or exc}")
        given_wrong = exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES)
        raise typer.Exit(EXIT_USAGE if given_wrong else EXIT_ENVIRONMENT) from None
    _err(f"dagbox: report written to {target}")


@app.command()
def gc() -> None:
    """Stop host processes and remove containers left by dagbox processes that are gone.

    (Killed with SIGKILL, for example.) What running dagbox processes own, and containers
    of other hosts, are left alone. `dagbox run` does the same as it starts.
    """
    import anyio

    from dagbox.owner import orphan_report, stop_orphans
    from dagbox.runtimes.container_engine import ContainerEngineUnavailable, connect, endpoint
    from dagbox.runtimes.gc import reap

    _check_settings()
    for message in orphan_report(stop_orphans()):
        typer.echo(message)

    async def main() -> list[tuple[str, str]]:
        async with connect(endpoint()) as client:
            return await reap(client)

    try:
        removed = anyio.run(main)
    except ContainerEngineUnavailable as exc:
        _err(f"dagbox: {exc}")
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    for container, run_id in removed:
        typer.echo(f"removed {container} (run {run_id})")
    typer.echo(f"{len(removed)} container{'s' if len(removed) != 1 else ''} removed")


@app.command("dry-run")
def dry_run(
    file: DagFile,
    trailing: Annotated[
        list[str] | None, typer.Argument(help="Params after --, as NAME=value.", show_default=False)
    ] = None,
    params: Annotated[
        str | None, typer.Option("--params", help='Params as one string: "A=1 B=2".')
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="One param, NAME=value; repeatable.")
    ] = None,
    params_file: ParamsFiles = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show what a run would do, without running anything.

    Steps in dispatch order with their dependencies, the runtime each uses
    (host, root container, step container, or exec into a named container),
    and each harness step's rendered argv per try.
    """
    import os

    from dagbox.compiler import compile
    from dagbox.secrets import Redactor, plan_secrets

    loaded = _load(file)
    overrides = _overrides(params, param or [], trailing or [], params_file or [])
    plan = _checked(compile(loaded.dag, overrides, loaded.path, loaded.dags), loaded)
    redactor = Redactor(plan_secrets(plan, os.environ))
    if as_json:
        import msgspec

        typer.echo(redactor.text(msgspec.json.format(msgspec.json.encode(plan), indent=2).decode()))
        return
    typer.echo(redactor.text(render_plan(plan)))


def render_plan(plan: Plan) -> str:
    from dagbox.plan import dispatch_order

    lines = [
        f"DAG {plan.dag} ({plan.type}; max_active_steps {plan.max_active_steps or 'unlimited'})"
    ]
    if plan.container is not None:
        c = plan.container
        what = f"exec into {c.exec}" if c.exec else f"image {c.image} (pull {c.pull_policy})"
        lines.append(f"root container: {what}")
    if plan.params:
        lines.append("params: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in plan.params.items()))
    lines.append("steps, in dispatch order:")
    width = max((len(s.name) for s in plan.steps), default=0)
    for i, step in enumerate(dispatch_order(plan), 1):
        lines.extend(_render_step(f"{i:>3}. {step.name:<{width}}", step))
    for name, step in plan.handlers.items():
        if name == next(iter(plan.handlers)):
            lines.append("handlers:")
        lines.extend(_render_step(f"     {name:<8}", step))
    for name, child in plan.dags.items():
        lines.append(f"\nsub-DAG {name}, as a call runs it:")
        lines.append(render_plan(child))
    return "\n".join(lines)


def _render_step(head: str, step: PlannedStep) -> list[str]:
    where = {
        "host": "host",
        "root": f"root container ({step.image})",
        "step": f"step container ({step.image})",
        "exec": f"exec in {step.container.exec if step.container else ''}",
    }[step.runtime]
    after = f"  after {', '.join(step.depends)}" if step.depends else ""
    out = [f"{head}  [{where}]{after}"]
    pad = " " * 9
    if step.kind == "harness":
        for n, t in enumerate(step.tries, 1):
            label = "try" if n == 1 else "fallback"
            stdin = f"  (stdin: {len(t.stdin)} chars)" if t.stdin else ""
            out.append(f"{pad}{label} {n} {t.provider}: {shlex.join(t.argv)}{stdin}")
        if step.error:
            out.append(f"{pad}will fail: {step.error}")
    elif step.kind == "argv" and isinstance(step.command, tuple):
        out.append(f"{pad}argv: {shlex.join(step.command)}")
    elif step.kind == "commands" and isinstance(step.command, tuple):
        out.append(f"{pad}in turn:")
        out.extend(f"{pad}  {n}. {line}" for n, line in enumerate(step.command, 1))
    elif step.kind == "image":
        out.append(
            f"{pad}image command: {shlex.join(step.command) if step.command else '(image default)'}"
        )
    elif step.call is not None:
        call = step.call
        fan = (
            "" if call.items is None else f" once per item (at most {call.max_concurrent} at once)"
        )
        out.append(f"{pad}calls DAG {call.dag}{fan}")
        if call.params is not None:
            given = (
                call.params
                if isinstance(call.params, str)
                else " ".join(f"{k}={v}" if k else v for k, v in call.params)
            )
            out.append(f"{pad}params: {given}")
        if isinstance(call.items, str):
            out.append(f"{pad}items: {call.items}")
        elif call.items is not None:
            out.append(f"{pad}items: {len(call.items)}")
    elif step.kind == "builtin":
        out.append(f"{pad}{step.action}: {' '.join(f'{k}={v!r}' for k, v in step.options.items())}")
    else:
        text = str(step.command)
        if "\n" in text.strip():
            out.append(f"{pad}script:")
            out.extend(f"{pad}  {line}" for line in text.rstrip("\n").split("\n"))
        else:
            out.append(f"{pad}run: {text.strip()}")
    return out


def main() -> None:
    app(prog_name="dagbox")
