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

from .config import StudyConfigError, load_study

__all__ = ["main", "cli"]


def _fail(message: str, code: int = 1) -> "None":
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


def _guard(fn):
    """Turn the project's known errors into one line + exit 1 (tracebacks are for bugs only)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .runner import StudyRunError

        try:
            import tracking

            store_error: type[BaseException] = tracking.TrackingStoreError
        except ImportError:  # pragma: no cover
            store_error = StudyRunError
        try:
            return fn(*args, **kwargs)
        except (StudyConfigError, StudyRunError, store_error, FileNotFoundError) as exc:
            text = str(exc) if not isinstance(exc, FileNotFoundError) or exc.args[1:] == () else f"{exc.filename}: {exc.strerror}"
            _fail(" ".join(text.split()))
        except KeyboardInterrupt as exc:
            _fail(f"interrupted ({str(exc) or 'Ctrl-C'})", 130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="amgt-study")
def cli() -> None:
    """Optimizer studies (Optuna + Ray Tune) recorded in MLflow, and reports against the AMGT paper's claims.

    \b
    Stores (URLs, as MLflow/Optuna/Ray take them):
      MLflow   --tracking-uri > the file's tracking_uri > MLFLOW_TRACKING_URI > sqlite:///mlflow.db
      Optuna   --optuna-storage > the file's optuna_storage > AMGT_OPTUNA_STORAGE > optuna.db beside mlflow.db
      Ray      the file's ray_address > RAY_ADDRESS > a local Ray
    """


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tracking-uri", help="MLflow tracking URI (sqlite:///..., postgresql+psycopg://..., http://...).")
@click.option("--optuna-storage", help="Optuna storage URL (sqlite:///... or postgresql+psycopg://...).")
@click.option("--name", help="Run the study under this name instead of the file's.")
@click.option("--ray-address", help="Ray cluster address (default: the file's, then RAY_ADDRESS, then local).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a field of the file (dotted keys, YAML values), e.g. --set epochs=5 --set seeds=3.")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; start and write nothing.")
@_guard
def run(file: str, tracking_uri: str | None, optuna_storage: str | None, name: str | None,
        ray_address: str | None, sets: tuple[str, ...], dry_run: bool) -> None:
    """Run the study in FILE (YAML); running it again finishes what is missing."""
    from .runner import check_resources, check_study_data, describe_plan, local_resources, resolve_stores, run_study

    cfg = load_study(file, sets=sets, name=name)
    if dry_run:
        stores = resolve_stores(cfg, tracking_uri, optuna_storage)
        for line in describe_plan(cfg, stores):
            _echo(line)
        if not (ray_address or cfg.ray_address or os.environ.get("RAY_ADDRESS")):
            check_resources(cfg, local_resources())
        for bench, root in check_study_data(cfg):  # FileNotFoundError -> one line, exit 1 (as `run`)
            _echo(f"  data: {bench} found in {root}")
        _echo("dry run: nothing started, nothing written")
        return
    _finish(cfg.name, run_study(cfg, tracking_uri=tracking_uri, optuna_storage=optuna_storage,
                                ray_address=ray_address, echo=_echo))


def _finish(name: str, summary: dict) -> None:
    """Exit 3 when planned trials did not finish (they failed after their retries, or were not run); 0 otherwise."""
    missing = sum(max(0, planned - s.finished.get(opt, 0)) for s in summary.values() for opt, planned in s.planned.items())
    if missing:
        failed = sum(getattr(s, "failed", {}).get(opt, 0) for s in summary.values() for opt in s.planned)
        why = f"{failed} failed after their retries" + (f", {missing - failed} not run" if missing > failed else "")
        click.echo(f"warning: {missing} planned trial(s) of study {name} did not complete ({why}); "
                   f"see `amgt-study status {name}`; `amgt-study resume {name}` runs the missing final/grid trials "
                   f"again (a failed search trial has used its share of the budget)", err=True)
        sys.exit(3)


@cli.command()
@click.argument("name")
@click.option("--ray-address", help="Ray cluster address (default: the saved study's, then RAY_ADDRESS, then local).")
@_guard
def resume(name: str, ray_address: str | None) -> None:
    """Finish the study NAME started from this directory (same stores; only missing trials run)."""
    from .runner import resume_study

    _finish(name, resume_study(name, ray_address=ray_address, echo=_echo))


@cli.command()
@click.argument("name", required=False)
@click.option("--tracking-uri", help="MLflow tracking URI (default: the saved study's, then MLFLOW_TRACKING_URI, then sqlite:///mlflow.db).")
@_guard
def status(name: str | None, tracking_uri: str | None) -> None:
    """Trials planned / completed / diverged / failed / running per phase and optimizer, the attempts (MLflow
    runs; a retried trial has one per attempt), and the best so far.  Without NAME: one line per study."""
    from .runner import studies_overview, study_status

    lines = study_status(name, tracking_uri=tracking_uri) if name else studies_overview(tracking_uri=tracking_uri)
    for line in lines:
        _echo(line)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a field, as for `run`.")
@_guard
def validate(files: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Check each study FILE against the schema (fields, optimizers, benchmarks, search spaces): one line per
    file ("ok: ..." or "error: ..."), exit 1 if any fails (`validate studies/*.yaml`).

    A schema check only: resources are checked against a cluster by `run` (and against this machine by
    `run --dry-run`); missing benchmark data is a warning here and an error for `run` and `run --dry-run`."""
    from .runner import check_study_data, StudyRunError

    bad = 0
    for file in files:
        try:
            cfg = load_study(file, sets=sets)
        except StudyConfigError as exc:
            bad += 1
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            continue
        n_opt = len(cfg.optimizers)
        _echo(f"ok: {file}: study {cfg.name} ({cfg.kind}, {cfg.benchmark}, {n_opt} optimizer{'s' * (n_opt != 1)}, "
              f"phases {', '.join(cfg.phases)})")
        try:
            check_study_data(cfg)
        except (FileNotFoundError, StudyRunError) as exc:
            click.echo(f"warning: {file}: `run` will refuse it: {' '.join(str(exc).split())}", err=True)
    if bad:
        sys.exit(1)


@cli.command("list")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, then sqlite:///mlflow.db).")
@_guard
def list_(tracking_uri: str | None) -> None:
    """The studies in the tracking store, and those started from this directory."""
    import tracking

    from .runner import STATE_DIR

    uri = tracking.resolve_tracking_uri(tracking_uri)
    names: list[str] = []
    if not (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].partition("?")[0]).exists()):
        from tracking import query

        tracking.check_tracking_store(uri)
        names = query.list_studies(uri)
    local = sorted(p.parent.name for p in (Path.cwd() / STATE_DIR).glob("*/study.yaml"))
    if not names and not local:
        _echo(f"no studies in {tracking.mask_uri(uri)} or in {Path.cwd() / STATE_DIR}")
        return
    for n in sorted(set(names) | set(local)):
        where = [w for w, ok in (("mlflow", n in names), ("local", n in local)) if ok]
        _echo(f"{n}\t({', '.join(where)})")


@cli.command()
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, then sqlite:///mlflow.db).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@_guard
def ui(tracking_uri: str | None, port: int) -> None:
    """Start the MLflow UI on the configured store, bound to localhost (127.0.0.1)."""
    import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    if tracking.store_kind(uri) == "http":
        _echo(f"the tracking store is an MLflow server: open {uri} in a browser")
        return
    tracking.check_tracking_store(uri)
    exe = shutil.which("mlflow")
    cmd = ([exe] if exe else [sys.executable, "-m", "mlflow"]) + [
        "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    root = tracking.default_artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    _echo(f"MLflow UI on http://127.0.0.1:{port} for {tracking.mask_uri(uri)} (Ctrl-C stops it)")
    sys.stdout.flush()
    os.execv(cmd[0], cmd)  # become `mlflow ui`: signals (Ctrl-C) go straight to it


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the report files.")
@click.option("--format", "formats", default="html,md,csv", show_default=True,
              help="Comma-separated formats: html, md, csv.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, then sqlite:///mlflow.db).")
@click.option("--optuna-storage", help="Optuna storage URL (for search-history plots).")
@_guard
def report(names: tuple[str, ...], out_dir: str, formats: str, tracking_uri: str | None,
           optuna_storage: str | None) -> None:
    """Build the robustness report of one or more studies (tables, plots, the paper's claims) from MLflow."""
    wanted = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    bad = [f for f in wanted if f not in ("html", "md", "csv")]
    if not wanted or bad:
        _fail(f"--format: {', '.join(bad) or 'nothing given'} not allowed; use a comma-separated subset of html,md,csv", 2)
    try:
        from tracking.reports import build_report
    except ImportError as exc:
        _fail(f"reports are not available in this installation: tracking.reports.build_report cannot be imported ({exc})")
    import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_store(uri)
    if optuna_storage is None:
        from .runner import STATE_DIR

        for n in names:  # the study's own Optuna storage, when it was run from here
            saved = Path.cwd() / STATE_DIR / n / "study.yaml"
            if saved.is_file():
                optuna_storage = load_study(saved).optuna_storage
                break
    try:
        result = build_report(list(names), tracking_uri=uri, out_dir=out_dir, formats=wanted,
                              optuna_storage=optuna_storage)
    except (ValueError, FileNotFoundError) as exc:
        _fail(f"report {' '.join(names)}: " + " ".join(str(exc).split()))
    for path in getattr(result, "paths", []) or []:
        _echo(f"wrote {path}")
    for item in getattr(result, "missing", []) or []:
        _echo(f"not measured: {item}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``amgt-study``)."""
    cli.main(args=argv, prog_name="amgt-study")


if __name__ == "__main__":  # pragma: no cover
    main()
