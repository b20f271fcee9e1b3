"""Writing a study into MLflow: one parent run per (study, phase), one nested child run per trial.

Layout and names are those of :mod:`tracking.schema`. All writes go through
:class:`mlflow.MlflowClient` (no fluent ``mlflow.start_run`` state), so the same code works in the
driver and in Ray worker processes, on every supported store (see :mod:`tracking.store`).

Run statuses (MLflow's): a completed or diverged trial ends ``FINISHED`` with tag
``outcome=completed|diverged``; a trial that raised ends ``FAILED`` with ``outcome=failed`` and its
error text in tag ``error``. A run is never left ``RUNNING`` by this module; runs left ``RUNNING``
by a killed worker process are closed by :func:`close_stale_runs` on resume.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from . import schema as S
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
    "close_stale_runs",
    "trial_params",
    "search_all_runs",
]

_log = logging.getLogger(__name__)

TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's nesting tag (the UI shows children under it)
# MLflow's batch limits (mlflow.utils.validation): 1000 metrics, 100 params+tags, 1000 entities per call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
STALE_ERROR = "run left RUNNING (worker process killed or lost); closed as FAILED by close_stale_runs on resume"


# ---- small helpers -------------------------------------------------------------------------------


def _quote(value: str) -> str:
    """A string literal for an MLflow search filter (no escape syntax exists: pick a free quote)."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"tag value {value!r} holds both quote characters; it cannot be searched in MLflow")


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


def _str_dict(values: Mapping[str, Any] | None, limit: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            text = json.dumps(value, sort_keys=True, default=str)
        else:
            text = str(value)
        out[str(key)] = _clip(text, limit)
    return out


def _log_params_tags(client: "MlflowClient", run_id: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
    from mlflow.entities import Param, RunTag

    entities: list = [Param(k, v) for k, v in params.items()] + [RunTag(k, v) for k, v in tags.items()]
    for chunk in _chunks(entities, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(
            run_id,
            params=[e for e in chunk if isinstance(e, Param)],
            tags=[e for e in chunk if isinstance(e, RunTag)],
        )


def _log_metrics(client: "MlflowClient", run_id: str, rows: Iterable[tuple[str, float, int]]) -> int:
    """Log (key, value, step) triples with log_batch in chunks of MLflow's limit; returns the count."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, step) for key, value, step in rows]
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


def search_all_runs(client: "MlflowClient", experiment_ids: list[str], filter_string: str,
                    order_by: list[str] | None = None) -> list["Run"]:
    """All runs matching ``filter_string`` (MLflow search syntax), following page tokens."""
    runs: list = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow params of a trial from its workers config: :data:`schema.PARAMS_TRIAL` keys present,
    plus ``hp.<name>`` for each entry of ``config["hparams"]`` (e.g. ``hp.lr``, ``hp.tau``)."""
    params = {k: config[k] for k in S.PARAMS_TRIAL if config.get(k) is not None}
    for name, value in (config.get("hparams") or {}).items():
        params[S.PARAM_HP_PREFIX + str(name)] = value
    return params


# ---- parent runs ---------------------------------------------------------------------------------


def find_parent_run(tracking_uri: str, experiment_id: str, *, study: str, phase: str) -> "Run | None":
    """The oldest active parent run of (study, phase) in the experiment, or None."""
    client = get_client(tracking_uri)
    flt = (f"tags.{S.TAG_ROLE} = {_quote(S.ROLE_PARENT)} and tags.{S.TAG_STUDY} = {_quote(study)} "
           f"and tags.{S.TAG_PHASE} = {_quote(phase)}")
    runs = search_all_runs(client, [experiment_id], flt, order_by=["attributes.start_time ASC"])
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
    new_params = _str_dict(params, MAX_PARAM_VAL_LENGTH)
    run = find_parent_run(uri, experiment_id, study=study, phase=phase)
    if run is None:
        run = client.create_run(experiment_id, tags=all_tags, run_name=f"{study}/{phase}")
        run_id = run.info.run_id
        _log_params_tags(client, run_id, new_params, {})
    else:
        run_id = run.info.run_id
        old = run.data.params
        changed = sorted(k for k, v in new_params.items() if k in old and old[k] != v)
        if changed:
            _log.warning("parent run %s of %s/%s: params %s differ from the first run's and are kept as "
                         "they were (MLflow params are immutable)", run_id, study, phase, changed)
        if run.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        _log_params_tags(client, run_id, {k: v for k, v in new_params.items() if k not in old}, all_tags)
    log_artifacts(uri, run_id, artifacts)
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
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str | None, *, trial_key: str,
                 tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 run_name: str | None = None):
        if not isinstance(trial_key, str) or not trial_key:
            raise ValueError(f"trial_key must be a non-empty string, got {trial_key!r}")
        _quote(trial_key)  # searchable
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_id = str(experiment_id)
        self.parent_run_id = parent_run_id
        self.trial_key = trial_key
        self.run_name = run_name or trial_key
        self.tags = _str_dict(tags, MAX_TAG_VAL_LENGTH)
        self.params = _str_dict(params, MAX_PARAM_VAL_LENGTH)
        self.run_id: str | None = None
        self.finished = False
        self._rows: list[dict[str, float]] = []
        self._client: MlflowClient | None = None

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
        flt = f"tags.{S.TAG_TRIAL_KEY} = {_quote(self.trial_key)} and attributes.status = 'FINISHED'"
        runs = search_all_runs(self.client, [self.experiment_id], flt, order_by=["attributes.end_time DESC"])
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
        except BaseException as exc:
            self._terminate_failed(f"logging params failed: {exc!r}")
            raise
        return self.run_id

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int) -> None:
        """Log one epoch's metrics in one ``log_batch`` call (chunked at MLflow's 1000), step = epoch.

        Non-numeric values and the ``"epoch"`` key are skipped; NaN/inf are logged (a diverging loss
        is a result; MLflow's SQL store keeps NaN and clamps ±inf to ±``sys.float_info.max``). The row is kept for the ``curves.csv`` artifact.
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
        _log_metrics(self.client, self.run_id, ((k, v, epoch) for k, v in row.items()))
        self._rows.append({"epoch": float(epoch), **row})

    def finish(self, result: Mapping[str, Any] | None = None, *, outcome: str, error: str | None = None,
               config: Mapping[str, Any] | None = None, killed: bool = False) -> None:
        """End the run: FINISHED for ``completed``/``diverged``, FAILED (with ``error``) for ``failed``
        (KILLED with ``killed=True``: the trial was interrupted, not broken).

        Logs, before terminating: the per-epoch ``result["history"]`` if no epoch was logged through
        :meth:`log_epoch` (batched), the final metrics (:data:`schema.METRICS_FINAL` keys of
        ``result`` that are finite, step = last epoch), tags ``outcome``, ``error`` and ``device``
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
                             ((k, v, int(r["epoch"])) for r in rows for k, v in r.items() if k != "epoch"))
                self._rows = rows
            last = int(self._rows[-1]["epoch"]) if self._rows else 0
            finals = {k: _as_float(result.get(k)) for k in S.METRICS_FINAL}
            _log_metrics(self.client, self.run_id,
                         ((k, v, last) for k, v in finals.items() if v is not None and math.isfinite(v)))
            tags = {S.TAG_OUTCOME: outcome}
            if error:
                tags[S.TAG_ERROR] = _clip(str(error), MAX_TAG_VAL_LENGTH)
            if result.get("device") and S.TAG_DEVICE not in self.tags:
                tags[S.TAG_DEVICE] = str(result["device"])
            _log_params_tags(self.client, self.run_id, {}, tags)
            artifacts: dict[str, Any] = {}
            if config is not None:
                artifacts[S.ARTIFACT_CONFIG] = dict(config)
            if self._rows:
                artifacts[S.ARTIFACT_CURVES] = self.curves_csv()
            log_artifacts(self.tracking_uri, self.run_id, artifacts)
        except BaseException as exc:
            self._terminate_failed(f"{error + chr(10) if error else ''}logging the trial's results failed: "
                                   f"{''.join(traceback.format_exception_only(type(exc), exc)).strip()}")
            raise
        failed_status = "KILLED" if killed else "FAILED"
        self.client.set_terminated(self.run_id, status=failed_status if outcome == "failed" else "FINISHED")
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
        """Best effort: tag and end the run FAILED (used when logging itself broke)."""
        try:
            self.client.set_tag(self.run_id, S.TAG_OUTCOME, "failed")
            self.client.set_tag(self.run_id, S.TAG_ERROR, _clip(error, MAX_TAG_VAL_LENGTH))
        except Exception:  # the store may be the thing that broke; still try to end the run
            pass
        try:
            self.client.set_terminated(self.run_id, status="FAILED")
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


# ---- resume ------------------------------------------------------------------------------------------


def close_stale_runs(tracking_uri: str, study: str, *, experiment_id: str | None = None,
                     phase: str | None = None, reason: str = STALE_ERROR, status: str = "FAILED") -> list[str]:
    """Mark the study's trial runs still ``RUNNING`` as ``status`` (``FAILED``, or ``KILLED`` for an
    interrupted driver; ``outcome=failed``, ``error=reason``).

    For the resume path, before new trials start: a worker process that was killed (OOM, node
    lost, Ctrl-C on the driver) leaves its child run RUNNING. Only call it when no trial of the
    study is running. The experiment is ``experiment_id`` or the one named ``study``.

    Returns:
        The ids of the runs closed (empty when there is no such experiment or no stale run).
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    if experiment_id is None:
        exp = client.get_experiment_by_name(study)
        if exp is None:
            return []
        experiment_id = exp.experiment_id
    flt = (f"attributes.status = 'RUNNING' and tags.{S.TAG_ROLE} = {_quote(S.ROLE_TRIAL)} "
           f"and tags.{S.TAG_STUDY} = {_quote(study)}")
    if phase is not None:
        flt += f" and tags.{S.TAG_PHASE} = {_quote(phase)}"
    closed = []
    for run in search_all_runs(client, [str(experiment_id)], flt):
        run_id = run.info.run_id
        _log_params_tags(client, run_id, {}, {S.TAG_OUTCOME: "failed", S.TAG_ERROR: reason})
        client.set_terminated(run_id, status=status)
        closed.append(run_id)
    return closed
