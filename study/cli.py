"""``amgt-study``: run, resume and inspect optimizer studies; open the MLflow UI; build reports.

Every command has ``--help``.  Errors are one clear line on stderr and a non-zero exit status
(1: the study, its data or a store is unusable; 2: a usage error, as click reports them; 3: ``run``/``resume``
finished but some planned trials failed after their retries; 130: interrupted).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from .config import StudyConfigError
from .loading import load_study

__all__ = ["main", "cli"]


def _fail(message: str, code: int = 1) -> "None":
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


def _cause_text(chain: list[BaseException]) -> str:
    """``Type: message`` of the innermost exception of ``chain`` that says something (a wrapper's text can be
    empty or ``()``: a tester was told "a store is unreachable: ()")."""
    from .errors import one_line

    for e in reversed(chain):
        text = one_line(e, 400)
        if text.strip("()[]{}'\" ,"):
            return f"{type(e).__name__}: {text}"
    return type(chain[-1]).__name__


def _known_error(exc: BaseException) -> str | None:
    """The one line for an error the user can act on: the project's own errors (also when another library
    wrapped them, e.g. Ray Tune re-raising a searcher's error), a store that stayed unreachable, a lost Ray
    cluster; None for anything else (a bug: its traceback is shown)."""
    import tracking
    from tracking.retry import is_transient

    from .errors import StudyRunError, one_line

    known = (StudyConfigError, StudyRunError, tracking.TrackingStoreError, FileNotFoundError)
    chain, seen, e = [], set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, known):
            if isinstance(e, FileNotFoundError) and e.args[1:] != ():
                return f"{e.filename}: {e.strerror}"
            return one_line(e, 2000)
    if is_transient(exc):
        return (f"a store is unreachable ({_cause_text(chain)}); start it again and `amgt-study resume` the "
                "study")
    if any(type(e).__module__.startswith("ray") and "Ray" in type(e).__name__ for e in chain):
        return (f"lost the Ray cluster: {one_line(chain[-1])}; the open phase's runs are closed by the next "
                "`amgt-study resume` of the study")
    return None


def _reader_gone() -> None:
    """stdout's reader went away (``amgt-study status | head -1``): end quietly, as a Unix filter does (Python's
    advice for SIGPIPE: point stdout at devnull so the interpreter's final flush does not fail again)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a filter ended by a closed pipe


def _guard(fn):
    """Turn the project's known errors into one line + exit 1 (tracebacks are for bugs only)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:  # Ctrl-C: 130; SIGTERM (study.interrupts.sigterm_as_interrupt): 143
            from .interrupts import terminated

            if terminated(exc):
                _fail("interrupted (SIGTERM to the driver)", 143)
            _fail(f"interrupted ({str(exc) or 'Ctrl-C'})", 130)
        except BrokenPipeError:
            _reader_gone()
        except Exception as exc:  # noqa: BLE001 - classified: known errors are one line, bugs re-raised
            line = _known_error(exc)
            if line is None:
                raise
            _fail(line)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="amgt-study")
def cli() -> None:
    """Optimizer studies (Optuna + Ray Tune) recorded in MLflow, and reports against the AMGT paper's claims.

    \b
    A study lives in its stores: run, resume, status and report find it from the tracking URI alone,
    from any directory (the default store, sqlite:///mlflow.db, is the current directory's: elsewhere
    give --tracking-uri or set MLFLOW_TRACKING_URI).  Stores (URLs, as MLflow/Optuna/Ray take them):
      MLflow   --tracking-uri > the file's tracking_uri > MLFLOW_TRACKING_URI > sqlite:///mlflow.db
      Optuna   --optuna-storage > the file's optuna_storage > AMGT_OPTUNA_STORAGE > the study's recorded one
               > optuna.db beside a SQLite mlflow.db / database <name>_optuna on the same PostgreSQL server
      Ray      --ray-address > the file's ray_address > RAY_ADDRESS > a local Ray
    """


def _store_options(fn=None, *, with_file: bool = False):
    """``--tracking-uri`` and ``--optuna-storage``: the same two options on every command that reads a study
    (``with_file``: a command that takes a study file, whose own stores come first)."""
    if fn is None:
        return lambda f: _store_options(f, with_file=with_file)
    first = "the study file's, then " if with_file else ""
    fn = click.option("--optuna-storage",
                      help=f"Optuna storage URL (default: {first}$AMGT_OPTUNA_STORAGE, then the one the "
                           "study was recorded with, then derived from the tracking URI: optuna.db beside mlflow.db; "
                           "<database>_optuna on PostgreSQL).")(fn)
    return click.option("--tracking-uri",
                        help=f"MLflow tracking URI (sqlite:///..., postgresql+psycopg://..., http://...; default: "
                             f"{first}$MLFLOW_TRACKING_URI, then sqlite:///mlflow.db in the current directory).")(fn)


def _progress_options(fn):
    """``--quiet`` and ``--system-metrics``: how ``run`` and ``resume`` show and record a study's trials."""
    fn = click.option("--system-metrics", is_flag=True,
                      help="Log MLflow's system metrics (system/*: CPU, memory, disk, network; GPU with pynvml) on "
                           "every trial run: sets MLflow's MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true for a local "
                           "Ray (on a cluster, set it in the job's runtime env).")(fn)
    fn = click.option("--verbose", "-v", is_flag=True,
                      help="Plain lines, one per trial start and end (with its Ray trial id), even on a terminal.")(fn)
    return click.option("--quiet", "-q", is_flag=True,
                        help="No progress display: only errors, warnings and the results table at the end.")(fn)


def _display(quiet: bool, verbose: bool, system_metrics: bool):
    from .progress import make_display

    if quiet and verbose:
        _fail("--quiet and --verbose: give one of them", 2)
    if system_metrics:
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "true"  # inherited by the local Ray's workers
    return make_display(quiet=quiet, verbose=verbose, echo=_echo)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_store_options(with_file=True)
@click.option("--name", help="Run the study under this name instead of the file's.")
@click.option("--ray-address", help="Ray cluster address (default: the file's, then RAY_ADDRESS, then local).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a field of the file (dotted keys, YAML values), e.g. --set epochs=5 --set seeds=3.")
@click.option("--dry-run", is_flag=True, help="Validate, check the stores (read only) and print the plan; start "
                                              "and write nothing.")
@_progress_options
@_guard
def run(file: str, tracking_uri: str | None, optuna_storage: str | None, name: str | None,
        ray_address: str | None, sets: tuple[str, ...], dry_run: bool, quiet: bool, verbose: bool,
        system_metrics: bool) -> None:
    """Run the study in FILE (YAML); running it again finishes what is missing.

    A name that already holds results of other settings (another --set, an edited file, other code) is
    refused before anything runs: use a new --name, or `resume` it as it was.

    \b
    While it runs: a live status area on a terminal (phase, trials done/planned per optimizer and overall,
    running trials and their epoch, elapsed, ETA, best score so far), plain lines otherwise (logs, CI).
    When it ends: per optimizer the chosen configuration and the final metric, mean and 95% CI over the
    seeds, and where the MLflow UI and the report are."""
    from .formatting import plan_lines
    from .runner import plan_study, run_study

    cfg = load_study(file, sets=sets, name=name)
    if dry_run:
        for line in plan_lines(plan_study(cfg, tracking_uri=tracking_uri, optuna_storage=optuna_storage,
                                          ray_address=ray_address)):
            _echo(line)
        _echo("dry run: nothing started, nothing written")
        return
    display = _display(quiet, verbose, system_metrics)
    with display:
        summary = run_study(cfg, tracking_uri=tracking_uri, optuna_storage=optuna_storage, ray_address=ray_address,
                            echo=display.message, display=display)
    _finish(cfg.name, summary, cfg, tracking_uri, optuna_storage, display)


def _print_results(name: str, uri: str, display) -> None:
    """The results table of study ``name`` and where to look further (study/summary.py's records)."""
    import tracking

    from .formatting import results_lines, results_table
    from .progress import LiveDisplay
    from .summary import study_results

    res = study_results(uri, name)
    store = "" if uri == tracking.resolve_tracking_uri(None) else f" --tracking-uri {tracking.mask_uri(uri)}"
    lines = results_lines(res, ui_command=f"amgt-study ui {name}{store}",
                          report_command=f"amgt-study report {name}{store} --out reports/{name}")
    if isinstance(display, LiveDisplay) and res.groups:
        from rich.table import Table

        head, rows = results_table(res)
        table = Table(title=lines[0], title_justify="left", header_style="bold")
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i < 3 else "right")
        for row in rows:
            table.add_row(*row)
        display.console.print(table)
        for line in lines[2 + len(rows):]:  # after the title, the header and the rows: the notes, where to look
            display.console.print(line, markup=False, highlight=False)
        return
    for line in lines:
        _echo(line)


def _finish(name: str, summary: dict, cfg=None, tracking_uri: str | None = None, optuna_storage: str | None = None,
            display=None) -> None:
    """Print the results of the study; exit 3 when planned trials did not finish (they failed after
    their retries, or were not run); 0 otherwise."""
    from .runner import stores_for

    try:
        _print_results(name, stores_for(cfg, name, tracking_uri, optuna_storage).tracking_uri, display)
    except Exception as exc:  # noqa: BLE001 - the study ran and is recorded; `status` reads it
        click.echo(f"warning: the results of study {name} could not be read back: {' '.join(str(exc).split())}",
                   err=True)
    missing = sum(s.missing for s in summary.values())
    if missing:
        failed = sum(sum(s.failed.values()) for s in summary.values())
        why = f"{failed} failed after their retries" + (f", {missing - failed} not run" if missing > failed else "")
        again = sum(s.rerunnable for s in summary.values())
        search = summary.get("search")
        why_not = []
        if search is not None and any(search.failed.values()):
            why_not.append("a failed search trial has used its share of the budget")
        if any(s.not_run for s in summary.values()):
            why_not.append("an optimizer without a completed search trial has nothing to re-run")
        if again:
            advice = f"`amgt-study resume {name}` runs {again} of them again" + (f" ({why_not[0]})" if why_not else "")
        else:
            advice = (f"`resume` cannot add any ({'; '.join(why_not) or 'nothing left to run'}): the results stand "
                      f"with these failures recorded; to try again after fixing the cause, run the file under a new "
                      f"name (--name {name}-2)")
        click.echo(f"warning: {missing} planned trial(s) of study {name} did not complete ({why}); "
                   f"see `amgt-study status {name}`; {advice}", err=True)
        sys.exit(3)


@cli.command()
@click.argument("name")
@_store_options
@click.option("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, then local).")
@_progress_options
@_guard
def resume(name: str, tracking_uri: str | None, optuna_storage: str | None, ray_address: str | None, quiet: bool,
           verbose: bool, system_metrics: bool) -> None:
    """Finish the study NAME as it was recorded in its stores (from any directory; only missing trials run).
    Shows its progress and results as `run` does."""
    from .runner import resume_study

    display = _display(quiet, verbose, system_metrics)
    with display:
        summary = resume_study(name, tracking_uri=tracking_uri, optuna_storage=optuna_storage,
                               ray_address=ray_address, echo=display.message, display=display)
    _finish(name, summary, None, tracking_uri, optuna_storage, display)


@cli.command()
@click.argument("name", required=False)
@_store_options
@_guard
def status(name: str | None, tracking_uri: str | None, optuna_storage: str | None) -> None:
    """Trials planned / completed / diverged / failed / interrupted / running per phase and optimizer, the
    attempts (MLflow runs; a retried trial has one per attempt), and the best so far.  Without NAME: one
    line per study in the store."""
    from .formatting import overview_line, status_lines
    from .runner import stores_for
    from .status import studies_overview, study_status
    from .stores import check_stores

    stores = stores_for(None, name or "", tracking_uri, optuna_storage)
    check_stores(stores, needs_optuna=False)
    if name:
        for line in status_lines(study_status(stores, name)):
            _echo(line)
        return
    studies = studies_overview(stores)
    if not studies:
        _echo(f"no studies in {stores.describe()}")
    for st in studies:
        _echo(overview_line(st))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a field, as for `run`.")
@_guard
def validate(files: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Check each study FILE against the schema (fields, optimizers, benchmarks, search spaces): one line per
    file ("ok: ..." or "error: ..."), exit 1 if any fails (`validate studies/*.yaml`).

    A schema check only: resources are checked against a cluster by `run` (and against this machine by
    `run --dry-run`); missing benchmark data is a warning here and an error for `run` and `run --dry-run`."""
    from .errors import StudyRunError
    from .preflight import check_study_data

    bad = 0
    for file in files:
        try:
            cfg = load_study(file, sets=sets)
        except StudyConfigError as exc:
            bad += 1
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            continue
        n_opt = len(cfg.optimizers)
        _echo(f"ok: {file}: study {cfg.name} ({cfg.kind}, {', '.join(cfg.benchmarks)}, "
              f"{n_opt} optimizer{'s' * (n_opt != 1)}, "
              f"phases {', '.join(cfg.phases)})")
        try:
            check_study_data(cfg)
        except (FileNotFoundError, StudyRunError) as exc:
            click.echo(f"warning: {file}: `run` will refuse it: {' '.join(str(exc).split())}", err=True)
    if bad:
        sys.exit(1)


@cli.command("list")
@click.argument("what", required=False, type=click.Choice(["optimizers", "benchmarks", "studies"]))
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then sqlite:///mlflow.db).")
@_guard
def list_(what: str | None, tracking_uri: str | None) -> None:
    """The optimizers and benchmarks a study file can name, with where each came from (built in, or the
    entry point of an installed package: groups amgt_study.optimizers, amgt_study.benchmarks), and the
    studies in the tracking store.  WHAT: only that list.  Any importable optimizer or benchmark may also be
    named by its import path (`class: "module:Attribute"`, `benchmark: "module:Attribute"`)."""
    from .catalog import benchmark_catalog, optimizer_catalog
    from .formatting import catalog_lines

    if what in (None, "optimizers"):
        for line in catalog_lines("optimizers", optimizer_catalog()):
            _echo(line)
    if what in (None, "benchmarks"):
        for line in catalog_lines("benchmarks", benchmark_catalog()):
            _echo(line)
    if what in (None, "studies"):
        _list_studies(tracking_uri, titled=what is None)


def _list_studies(tracking_uri: str | None, titled: bool) -> None:
    """The studies in the tracking store, one name a line (a SQLite file that does not exist holds none)."""
    import tracking
    from tracking import query

    from .stores import resolve_stores

    stores = resolve_stores(tracking_uri)
    uri = stores.tracking_uri
    names: list[str] = []
    if not (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].partition("?")[0]).exists()):
        tracking.check_tracking_store(uri)
        names = query.list_studies(uri)
    if not names:
        _echo(f"no studies in {tracking.mask_uri(uri)}")
        return
    if titled:
        _echo(f"studies in {tracking.mask_uri(uri)} ({len(names)}):")
    for n in names:
        _echo(f"  {n}" if titled else n)


def _study_view(uri: str, name: str, ui_url: str) -> list[str]:
    """Save study ``name``'s runs view (study/views.py); the lines saying where it opens."""
    from .views import save_study_view

    view = save_study_view(uri, name, ui_url)
    return [f"study {name}: {view.charts_url}",
            f"  (its {view.phase or 'trial'} runs grouped by optimizer, the results/* charts first; as a table: "
            f"{view.table_url})"]


@cli.command()
@click.argument("name", required=False)
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then sqlite:///mlflow.db).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@_guard
def ui(name: str | None, tracking_uri: str | None, port: int) -> None:
    """Start the MLflow UI on the configured store, bound to localhost (127.0.0.1).

    With NAME: first save the study's runs view in its experiment (tag mlflow.sharedViewState.amgt-study:
    its final/ablation/grid trial runs grouped by optimizer, the results/* metrics first) and print the
    address that opens it in the UI's "Model training" layout, on the charts: the first screen says who won."""
    import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    if tracking.store_kind(uri) == "http":
        for line in _study_view(uri, name, uri) if name else []:
            _echo(line)
        _echo(f"the tracking store is an MLflow server: open {uri} in a browser")
        return
    tracking.check_tracking_store(uri)
    exe = shutil.which("mlflow")
    cmd = ([exe] if exe else [sys.executable, "-m", "mlflow"]) + [
        "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    root = tracking.default_artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    _echo(f"MLflow UI starting on http://127.0.0.1:{port} for {tracking.mask_uri(uri)}: it answers once mlflow "
          f"logs that it is listening (seconds; longer on a busy machine); Ctrl-C stops it")
    for line in _study_view(uri, name, f"http://127.0.0.1:{port}") if name else []:
        _echo(line)
    sys.stdout.flush()
    # MLflow's server warns about its own use of starlette, once per worker: nothing a user can act on
    quiet = "ignore:starlette.middleware.wsgi is deprecated:UserWarning"
    os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)
    os.execv(cmd[0], cmd)  # become `mlflow ui`: signals (Ctrl-C) go straight to it


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the report files.")
@click.option("--format", "formats", default="html,md,csv", show_default=True,
              help="Comma-separated formats: html, md, csv.")
@click.option("--candidate", default=None, metavar="OPT",
              help="Optimizer compared against the baseline (default: amgt when the studies have AMGT runs, "
                   "else every other optimizer of the final phase). Not amgt: a 'candidate vs baseline' section "
                   "instead of the paper's claims C1-C15.")
@click.option("--baseline", default=None, metavar="OPT", help="Optimizer compared against (default: adam).")
@_store_options
@_guard
def report(names: tuple[str, ...], out_dir: str, formats: str, candidate: str | None, baseline: str | None,
           tracking_uri: str | None, optuna_storage: str | None) -> None:
    """Build the robustness report of one or more studies (tables, plots, the paper's claims or a candidate
    against a baseline) from MLflow."""
    if not out_dir.strip():
        _fail("--out: an empty path is not allowed; give the directory for the report files (default: reports)", 2)
    wanted = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    bad = [f for f in wanted if f not in ("html", "md", "csv")]
    if not wanted or bad:
        _fail(f"--format: {', '.join(bad) or 'nothing given'} not allowed; use a comma-separated subset of html,md,csv", 2)
    try:
        from tracking.reports import build_report
    except ImportError as exc:
        _fail(f"reports are not available in this installation: tracking.reports.build_report cannot be imported ({exc})")
    import tracking

    from .runner import stores_for

    stores = stores_for(None, names[0], tracking_uri, optuna_storage)  # the first study's recorded Optuna storage
    uri = stores.tracking_uri
    tracking.check_tracking_store(uri)
    optuna_storage = stores.optuna_storage
    if optuna_storage and optuna_storage.startswith("sqlite:///") and not Path(optuna_storage[10:]).exists():
        optuna_storage = None  # nothing was searched: no search-history plots
    try:
        result = build_report(list(names), tracking_uri=uri, out_dir=out_dir, formats=wanted,
                              optuna_storage=optuna_storage, candidate=candidate, baseline=baseline)
    except (ValueError, FileNotFoundError) as exc:
        _fail(f"report {' '.join(names)}: " + " ".join(str(exc).split()))
    except OSError as exc:  # --out under a file, not writable, disk full
        _fail(f"report {' '.join(names)}: cannot write the report under --out {out_dir}: "
              f"{exc.strerror or exc} ({exc.filename or out_dir})")
    for path in getattr(result, "paths", []) or []:
        _echo(f"wrote {path}")
    for item in getattr(result, "missing", []) or []:
        _echo(f"missing: {item}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``amgt-study``)."""
    cli.main(args=argv, prog_name="amgt-study")


if __name__ == "__main__":  # pragma: no cover
    main()
