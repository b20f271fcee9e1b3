"""Writing a study into MLflow: one parent run per (study, phase), one nested child run per trial.

Layout and names are those of :mod:`tracking.schema`. All writes go through
:class:`mlflow.MlflowClient` (no fluent ``mlflow.start_run`` state), so the same code works in the
driver and in Ray worker processes, on every supported store (see :mod:`tracking.store`).

Run statuses (MLflow's): a completed or diverged trial ends ``FINISHED`` with tag
``outcome=completed|diverged``; a trial that raised ends ``FAILED`` with ``outcome=failed`` and its
error text in tag ``error``. A run is never left ``RUNNING`` by this module; runs left ``RUNNING``
by a killed worker process are closed by :func:`tracking.stale.close_stale_runs` on resume.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from . import schema as S
from .search import quote, run_filter, search_runs
from .store import get_client, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "start_parent_run",
    "end_parent_run",
    "log_artifacts",
    "find_parent_run",
    "TrialLogger",
    "trial_params",
    "log_summary",
    "mark_training_experiment",
    "results_metrics",
]

_log = logging.getLogger(__name__)

TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's nesting tag (the UI shows children under it)
# MLflow's batch limits (mlflow.utils.validation): 1000 metrics, 100 params+tags, 1000 entities per call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
TAG_INFINITE = "metrics_infinite"   # "train_loss:+inf,val_loss:-inf": metrics logged as NaN because they were ±inf
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
STALE_ERROR = "run left RUNNING (worker process killed or lost); closed as FAILED by close_stale_runs on resume"


# ---- small helpers -------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    """Keep head and tail of a long text (a traceback's last lines say what failed)."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return text[:head] + "\n...[truncated]...\n" + text[-(limit - head - 20):]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _as_float(value: Any) -> float | None:
    """A metric value as float; None for things that are not numbers (strings, None, lists)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:  # numpy / torch scalars
        import numbers

        if isinstance(value, numbers.Real):
            return float(value)
        if hasattr(value, "item") and getattr(value, "ndim", None) in (0, None):
            item = value.item()
            return float(item) if isinstance(item, (int, float, bool)) else None
    except Exception:
        return None
    return None


def _texts(values: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if value is None:
            continue
        out[str(key)] = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list, tuple)) \
            else str(value)
    return out


def _str_dict(values: Mapping[str, Any] | None, limit: int) -> dict[str, str]:
    """Tag values as text, each clipped to ``limit`` (head and tail kept, the cut marked)."""
    return {k: _clip(v, limit) for k, v in _texts(values).items()}


def param_artifact(key: str) -> str:
    """Where the whole value of a param too long for MLflow is kept: artifact ``params/<key>.txt``."""
    return f"params/{_SAFE_NAME.sub('_', key)}.txt"


def _param_dict(values: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """Param values as text fitting MLflow's limit, and ``{artifact path: whole value}`` of those that do
    not: such a param holds its start and a marker naming the artifact with the whole value."""
    fitted, whole = {}, {}
    for key, text in _texts(values).items():
        if len(text) <= MAX_PARAM_VAL_LENGTH:
            fitted[key] = text
            continue
        marker = f" ...[clipped: {len(text):,} characters in all, whole value in artifact {param_artifact(key)}]"
        fitted[key] = text[: MAX_PARAM_VAL_LENGTH - len(marker)] + marker
        whole[param_artifact(key)] = text
    return fitted, whole


def _log_params_tags(client: "MlflowClient", run_id: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
    from mlflow.entities import Param, RunTag

    entities: list = [Param(k, v) for k, v in params.items()] + [RunTag(k, v) for k, v in tags.items()]
    for chunk in _chunks(entities, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(
            run_id,
            params=[e for e in chunk if isinstance(e, Param)],
            tags=[e for e in chunk if isinstance(e, RunTag)],
        )


def _log_metrics(client: "MlflowClient", run_id: str, rows: Iterable[tuple[str, float, int]],
                 infinite: dict[str, str] | None = None) -> int:
    """Log (key, value, step) triples with log_batch in chunks of MLflow's limit; returns the count.

    MLflow's SQL stores clamp ±inf to ±1.797e308 (a "latest val_loss" of −1.797e308 reads as a number):
    ±inf is logged as NaN instead, and its sign kept in ``infinite`` ({key: "+inf" | "-inf"}) for the run's
    tag :data:`TAG_INFINITE`."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for key, value, step in rows:
        if math.isinf(value):
            if infinite is not None:
                infinite[key] = "+inf" if value > 0 else "-inf"
            value = math.nan
        metrics.append(Metric(key, value, now, step))
    for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(chunk))
    return len(metrics)


def log_artifacts(tracking_uri: str, run_id: str, artifacts: Mapping[str, Any] | None) -> None:
    """Log artifacts to a run: ``{artifact_file: content}``.

    ``content`` is a ``str`` (written as text), a ``dict``/``list`` (JSON, sorted keys), ``bytes``,
    or a :class:`pathlib.Path` to an existing file or directory (uploaded as is under
    ``artifact_file``'s directory part, keeping its own name when ``artifact_file`` ends with ``/``).
    """
    if not artifacts:
        return
    client = get_client(tracking_uri)
    for name, content in artifacts.items():
        if isinstance(content, Path):
            if not content.exists():
                raise FileNotFoundError(f"artifact {name!r}: {str(content)!r} does not exist")
            target = name.rstrip("/") if name.endswith("/") else str(Path(name).parent)
            target = None if target in ("", ".") else target
            if content.is_dir():
                client.log_artifacts(run_id, str(content), artifact_path=target)
            elif name.endswith("/") or content.name == Path(name).name:
                client.log_artifact(run_id, str(content), artifact_path=target)
            else:
                client.log_text(run_id, content.read_text(), name)
        elif isinstance(content, str):
            client.log_text(run_id, content, name)
        elif isinstance(content, bytes):
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / Path(name).name
                path.write_bytes(content)
                parent = str(Path(name).parent)
                client.log_artifact(run_id, str(path), artifact_path=None if parent == "." else parent)
        else:
            client.log_text(run_id, json.dumps(content, indent=2, sort_keys=True, default=str), name)


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow params of a trial from its workers config: :data:`schema.PARAMS_TRIAL` keys present,
    plus ``hp.<name>`` for each entry of ``config["hparams"]`` (e.g. ``hp.lr``, ``hp.tau``)."""
    params = {k: config[k] for k in S.PARAMS_TRIAL if config.get(k) is not None}
    for name, value in (config.get("hparams") or {}).items():
        params[S.PARAM_HP_PREFIX + str(name)] = value
    return params


def results_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """``{"results/<metric>": value}`` for the finite :data:`schema.METRICS_HEADLINE` values in ``values``
    (a trial's final values; see :data:`schema.RESULTS_PREFIX` for why they are logged twice)."""
    out = {}
    for key in S.METRICS_HEADLINE:
        v = _as_float(values.get(key))
        if v is not None and math.isfinite(v):
            out[S.RESULTS_PREFIX + key] = v
    return out


def _new_params(run: "Run", params: Mapping[str, str]) -> dict[str, str]:
    """The params not on ``run`` yet; a param already there with another value is kept (MLflow params are
    immutable) and named in a warning."""
    old, run_id = run.data.params, run.info.run_id
    changed = sorted(k for k, v in params.items() if k in old and old[k] != v)
    if changed:
        _log.warning("run %s: params %s differ from the values logged first and are kept as they were (MLflow "
                     "params are immutable)", run_id, changed)
    return {k: v for k, v in params.items() if k not in old}


def log_summary(tracking_uri: str, run_id: str, metrics: Mapping[str, float] | None = None,
                params: Mapping[str, Any] | None = None) -> None:
    """Log a parent run's summary: ``metrics`` at ``step = 0`` (logged again they replace the earlier value:
    the latest timestamp wins at equal steps; non-finite values are left out) and the ``params`` not logged
    yet (MLflow params are immutable: one already there keeps its value, with a warning if it differs)."""
    client = get_client(tracking_uri)
    rows = [(k, v, 0) for k, v in ((k, _as_float(v)) for k, v in (metrics or {}).items())
            if v is not None and math.isfinite(v)]
    if rows:
        _log_metrics(client, run_id, rows)
    if params:
        _log_params_tags(client, run_id, _new_params(client.get_run(run_id), _str_dict(params, MAX_PARAM_VAL_LENGTH)), {})


def mark_training_experiment(tracking_uri: str, experiment_id: str, description: str | None = None) -> None:
    """Tag the experiment so the MLflow UI opens it in its training layout (:data:`schema.TAG_EXPERIMENT_KIND`),
    and give it ``description`` (``mlflow.note.content``) when it has none."""
    client = get_client(tracking_uri)
    tags = client.get_experiment(experiment_id).tags
    if tags.get(S.TAG_EXPERIMENT_KIND) != S.EXPERIMENT_KIND_TRAINING:
        client.set_experiment_tag(experiment_id, S.TAG_EXPERIMENT_KIND, S.EXPERIMENT_KIND_TRAINING)
    if description and not tags.get(S.TAG_NOTE):
        client.set_experiment_tag(experiment_id, S.TAG_NOTE, description)


# ---- parent runs ---------------------------------------------------------------------------------


def find_parent_run(tracking_uri: str, experiment_id: str, *, study: str, phase: str) -> "Run | None":
    """The oldest active parent run of (study, phase) in the experiment, or None."""
    client = get_client(tracking_uri)
    flt = run_filter(role=S.ROLE_PARENT, study=study, phase=phase)
    runs = search_runs(client, [experiment_id], flt, order_by=["attributes.start_time ASC"])
    return runs[0] if runs else None


def start_parent_run(tracking_uri: str, experiment_id: str, *, study: str, phase: str, kind: str,
                     params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
                     artifacts: Mapping[str, Any] | None = None) -> str:
    """Open the parent run of (study, phase), reusing the existing one on resume; returns its run id.

    The run is tagged ``role=parent``, ``study``, ``phase``, ``kind`` plus ``tags`` (tags are updated
    on reuse), named ``"<study>/<phase>"``, and set to ``RUNNING`` (MLflow allows reopening a
    terminated run). Params already on a reused run are kept: MLflow params are immutable, so a
    param whose value changed is not re-logged and a warning names it. ``artifacts`` as in
    :func:`log_artifacts`. Close it with :func:`end_parent_run`.

    Raises:
        ValueError: ``phase`` not in :data:`schema.PHASES`.
    """
    if phase not in S.PHASES:
        raise ValueError(f"phase {phase!r} is not one of {S.PHASES}")
    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    all_tags = _str_dict(tags, MAX_TAG_VAL_LENGTH)
    all_tags.update({S.TAG_ROLE: S.ROLE_PARENT, S.TAG_STUDY: study, S.TAG_PHASE: phase, S.TAG_KIND: kind})
    new_params, whole = _param_dict(params)
    run = find_parent_run(uri, experiment_id, study=study, phase=phase)
    if run is None:
        run = client.create_run(experiment_id, tags=all_tags, run_name=f"{study}/{phase}")
        run_id = run.info.run_id
        _log_params_tags(client, run_id, new_params, {})
    else:
        run_id = run.info.run_id
        if run.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        _log_params_tags(client, run_id, _new_params(run, new_params), all_tags)
    log_artifacts(uri, run_id, {**whole, **(artifacts or {})})
    return run_id


def end_parent_run(tracking_uri: str, run_id: str, status: str = "FINISHED", *,
                   error: str | None = None) -> None:
    """Terminate a parent run: ``status`` is ``FINISHED``, ``FAILED`` or ``KILLED`` (MLflow's).
    ``error`` (e.g. the driver's traceback) is stored in tag ``error``; ending FINISHED without one removes
    an ``error`` tag left by an earlier, interrupted driver (the run was reopened by ``resume``)."""
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ValueError(f"status {status!r} is not one of FINISHED, FAILED, KILLED")
    client = get_client(tracking_uri)
    if error:
        client.set_tag(run_id, S.TAG_ERROR, _clip(error, MAX_TAG_VAL_LENGTH))
    elif status == "FINISHED" and S.TAG_ERROR in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, S.TAG_ERROR)  # reopened by resume: the earlier driver's error is history
    client.set_terminated(run_id, status=status)


# ---- trials ----------------------------------------------------------------------------------------


class TrialLogger:
    """One trial's nested child run: params, tags, per-epoch metrics, artifacts, final status.

    Typical use in a trial (driver or Ray worker)::

        tl = TrialLogger(uri, experiment_id, parent_run_id, trial_key=key, tags=tags, params=params)
        if tl.existing():               # resume: already finished, do not run it again
            return
        with tl:                        # start(); an exception ends the run FAILED and propagates
            result = workers.run_trial(config, report=lambda m: tl.log_epoch(m, int(m["epoch"])))
            tl.finish(result, outcome=result["status"], config=config)

    Args:
        tracking_uri, experiment_id, parent_run_id: where the run goes (``mlflow.parentRunId`` is
            set to ``parent_run_id``, so the MLflow UI nests it).
        trial_key: stable id of the planned trial (tag ``trial_key``); :meth:`existing` finds a
            finished run by it.
        tags: schema tags (study, phase, optimizer, benchmark, seed, optuna_trial_number,
            ray_trial_id, device, ...); values are stringified, ``None`` dropped. ``role=trial``,
            ``trial_key`` and the git commit (when in a git checkout) are added.
        params: run params (strings in MLflow); see :func:`trial_params` for the schema's names.
        run_name: MLflow run name; default ``trial_key``.
        system_metrics: log MLflow's system metrics (CPU, memory, disk, network, GPU when ``pynvml`` is
            installed; ``system/*``, every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` s, default 10) while
            the run is open, with MLflow's ``SystemMetricsMonitor`` (what ``mlflow.start_run(
            log_system_metrics=True)`` starts).  None: as MLflow's ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING``.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str | None, *, trial_key: str,
                 tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 run_name: str | None = None, system_metrics: bool | None = None):
        if not isinstance(trial_key, str) or not trial_key:
            raise ValueError(f"trial_key must be a non-empty string, got {trial_key!r}")
        quote(trial_key)  # searchable
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_id = str(experiment_id)
        self.parent_run_id = parent_run_id
        self.trial_key = trial_key
        self.run_name = run_name or trial_key
        self.tags = _str_dict(tags, MAX_TAG_VAL_LENGTH)
        self.params, self._whole_params = _param_dict(params)
        self.infinite: dict[str, str] = {}
        self.run_id: str | None = None
        self.finished = False
        self._rows: list[dict[str, float]] = []
        self._client: MlflowClient | None = None
        if system_metrics is None:
            from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING

            system_metrics = bool(MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get())
        self.system_metrics = system_metrics
        self._monitor = None

    @property
    def client(self) -> "MlflowClient":
        if self._client is None:
            self._client = get_client(self.tracking_uri)
        return self._client

    # -- resume --
    def existing(self) -> dict | None:
        """The latest ``FINISHED`` run with this ``trial_key`` in the experiment, else None.

        Returns ``{"run_id", "status", "outcome", "tags", "params", "metrics"}`` (latest metric
        values). FAILED runs do not count: a failed trial is run again on resume.
        """
        flt = run_filter(trial_key=self.trial_key, status="FINISHED")
        runs = search_runs(self.client, [self.experiment_id], flt, order_by=["attributes.end_time DESC"])
        if not runs:
            return None
        run = runs[0]
        return {
            "run_id": run.info.run_id,
            "status": run.info.status,
            "outcome": run.data.tags.get(S.TAG_OUTCOME),
            "tags": dict(run.data.tags),
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
        }

    # -- lifecycle --
    def start(self) -> str:
        """Create the child run (status RUNNING) with its tags and params; returns the run id."""
        if self.run_id is not None:
            return self.run_id
        from .provenance import git_sha

        tags = dict(self.tags)
        tags[S.TAG_ROLE] = S.ROLE_TRIAL
        tags[S.TAG_TRIAL_KEY] = self.trial_key
        if self.parent_run_id:
            tags[TAG_PARENT_RUN_ID] = self.parent_run_id
        if S.TAG_GIT_SHA not in tags:
            sha = git_sha()
            if sha:
                tags[S.TAG_GIT_SHA] = sha
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.run_name)
        self.run_id = run.info.run_id
        try:
            _log_params_tags(self.client, self.run_id, self.params, {})
            log_artifacts(self.tracking_uri, self.run_id, self._whole_params)
        except BaseException as exc:
            self._terminate_failed(f"logging params failed: {exc!r}")
            raise
        if self.system_metrics:
            self._start_monitor()
        return self.run_id

    def _start_monitor(self) -> None:
        """Start MLflow's system-metrics monitor on this run (best effort: a failure is a warning)."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self.run_id, tracking_uri=self.tracking_uri)
            self._monitor.start()
        except Exception as exc:  # noqa: BLE001 - e.g. psutil missing: the trial runs without them
            self._monitor = None
            _log.warning("run %s: system metrics not logged: %s", self.run_id, exc)

    def _terminate(self, status: str) -> None:
        """Stop the system-metrics monitor (its last samples are logged), then end the run with ``status``."""
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            try:
                monitor.finish()
            except Exception as exc:  # noqa: BLE001
                _log.warning("run %s: stopping the system metrics monitor failed: %s", self.run_id, exc)
        self.client.set_terminated(self.run_id, status=status)

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int) -> None:
        """Log one epoch's metrics in one ``log_batch`` call (chunked at MLflow's 1000), step = epoch.

        Non-numeric values and the ``"epoch"`` key are skipped; NaN is logged (a diverging loss is a result);
        ±inf is logged as NaN with its sign in tag :data:`TAG_INFINITE` (MLflow's SQL stores would clamp it to
        ±``sys.float_info.max``). The row, ±inf included, is kept for the ``curves.csv`` artifact.
        """
        if self.run_id is None:
            self.start()
        epoch = int(epoch)
        row = {}
        for key, value in metrics.items():
            if key == "epoch":
                continue
            num = _as_float(value)
            if num is not None:
                row[str(key)] = num
        _log_metrics(self.client, self.run_id, ((k, v, epoch) for k, v in row.items()), self.infinite)
        self._rows.append({"epoch": float(epoch), **row})

    def finish(self, result: Mapping[str, Any] | None = None, *, outcome: str, error: str | None = None,
               config: Mapping[str, Any] | None = None, killed: bool = False) -> None:
        """End the run: FINISHED for ``completed``/``diverged``, FAILED (with ``error``) for ``failed``
        (KILLED with ``killed=True``: the trial was interrupted, not broken).

        Logs, before terminating: the per-epoch ``result["history"]`` if no epoch was logged through
        :meth:`log_epoch` (batched), the final metrics (:data:`schema.METRICS_FINAL` keys of
        ``result`` that are finite, and unless ``failed`` the final values of the headline metrics as
        ``results/<metric>``; all at step 0, see :data:`schema.RESULTS_PREFIX`), tags ``outcome``, ``error`` and ``device``
        (from ``result["device"]`` unless given), and the artifacts ``config.json`` (``config``)
        and ``curves.csv`` (one row per epoch). If logging itself fails, the run still ends — as
        FAILED with the logging error in tag ``error`` — and the exception propagates.

        Raises:
            ValueError: ``outcome`` not in :data:`schema.OUTCOMES`.
        """
        if outcome not in S.OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {S.OUTCOMES}")
        if self.finished:
            raise RuntimeError(f"trial {self.trial_key!r}: run {self.run_id} is already finished")
        if self.run_id is None:
            self.start()
        result = dict(result or {})
        try:
            history = result.get("history") or []
            if not self._rows and history:
                rows = []
                for i, entry in enumerate(history, start=1):
                    epoch = int(entry.get("epoch", i))
                    row = {k: v for k, v in ((k, _as_float(v)) for k, v in entry.items() if k != "epoch")
                           if v is not None}
                    rows.append({"epoch": float(epoch), **row})
                _log_metrics(self.client, self.run_id,
                             ((k, v, int(r["epoch"])) for r in rows for k, v in r.items() if k != "epoch"),
                             self.infinite)
                self._rows = rows
            finals = {k: _as_float(result.get(k)) for k in S.METRICS_FINAL}
            finals = {k: v for k, v in finals.items() if v is not None and math.isfinite(v)}
            if outcome != "failed":
                last = {**(self._rows[-1] if self._rows else {}), **{k: v for k, v in result.items() if k != "history"}}
                finals.update(results_metrics({**last, **finals}))
            # step 0: values of the trial as a whole (MLflow's charts draw them as bars, see schema.RESULTS_PREFIX)
            _log_metrics(self.client, self.run_id, ((k, v, 0) for k, v in finals.items()))
            tags = {S.TAG_OUTCOME: outcome}
            if self.infinite:
                tags[TAG_INFINITE] = ",".join(f"{k}:{v}" for k, v in sorted(self.infinite.items()))
            if error:
                tags[S.TAG_ERROR] = _clip(str(error), MAX_TAG_VAL_LENGTH)
            if result.get("device") and S.TAG_DEVICE not in self.tags:
                tags[S.TAG_DEVICE] = str(result["device"])
            _log_params_tags(self.client, self.run_id, {}, tags)
            if killed:
                # Interrupted: end the run first (the worker may be stopped any moment now); artifacts after.
                self._terminate("KILLED")
                self.finished = True
            artifacts: dict[str, Any] = {}
            if config is not None:
                artifacts[S.ARTIFACT_CONFIG] = dict(config)
            if self._rows:
                artifacts[S.ARTIFACT_CURVES] = self.curves_csv()
            log_artifacts(self.tracking_uri, self.run_id, artifacts)
        except BaseException as exc:
            if not self.finished:
                self._terminate_failed(f"{error + chr(10) if error else ''}logging the trial's results failed: "
                                       f"{''.join(traceback.format_exception_only(type(exc), exc)).strip()}")
            raise
        if not self.finished:
            self._terminate("FAILED" if outcome == "failed" else "FINISHED")
            self.finished = True

    def curves_csv(self) -> str:
        """The per-epoch rows as CSV: ``epoch``, then :data:`schema.METRICS_EPOCH` present, then others."""
        present = {k for row in self._rows for k in row if k != "epoch"}
        cols = ["epoch"] + [k for k in S.METRICS_EPOCH if k in present] + sorted(present - set(S.METRICS_EPOCH))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
        writer.writeheader()
        for row in self._rows:
            writer.writerow({k: (int(v) if k == "epoch" else repr(v)) for k, v in row.items()})
        return buf.getvalue()

    def _terminate_failed(self, error: str) -> None:
        """Best effort: tag and end the run FAILED (used when logging itself broke).  A run the driver has
        already ended (study/attempts.py: a trial ASHA stopped is closed FINISHED while its worker is torn
        down) is left as it is: a worker's late failure must not overwrite the result of record."""
        try:
            status = self.client.get_run(self.run_id).info.status
        except Exception:  # noqa: BLE001 - the store may be the thing that broke: try to end the run below
            status = "RUNNING"
        if status != "RUNNING":
            _log.warning("run %s was already ended %s; not marking it FAILED (%s)", self.run_id, status,
                         error.splitlines()[-1] if error else "")
            self.finished = True
            return
        try:
            self.client.set_tag(self.run_id, S.TAG_OUTCOME, "failed")
            self.client.set_tag(self.run_id, S.TAG_ERROR, _clip(error, MAX_TAG_VAL_LENGTH))
        except Exception:  # the store may be the thing that broke; still try to end the run
            pass
        try:
            self._terminate("FAILED")
            self.finished = True
        except Exception:
            _log.error("could not mark run %s FAILED; close_stale_runs will on resume", self.run_id)

    def fail(self, error: str | BaseException) -> None:
        """End the run FAILED with ``error`` (text or exception, with its traceback)."""
        if isinstance(error, BaseException):
            error = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.finish(None, outcome="failed", error=str(error))

    # -- context manager --
    def __enter__(self) -> "TrialLogger":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.finished:
            return False
        if exc is not None:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            try:
                self.finish(None, outcome="failed", error=text)
            except Exception:
                self._terminate_failed(text)
        else:
            self.finish(None, outcome="failed", error="trial ended without TrialLogger.finish()")
        return False
