"""The data set a trial trained on, as an MLflow dataset input (what ``mlflow.log_input`` records).

MLflow keeps a dataset as (name, digest, source type, source, schema, profile) and links it to a run with a
``DatasetInput`` whose tag ``mlflow.data.context`` says how the run used it; the UI's runs table shows
them in its "Dataset" column and filters runs by them.  Everything goes through
``MlflowClient.log_inputs`` (no fluent run), so it works in Ray workers and on every store.

Limits (``mlflow.utils.validation``): the digest is at most 36 characters, so a SHA-256 (64 hex) is stored
shortened to :data:`DIGEST_LENGTH` and in full in the profile; one run cannot hold the same dataset twice,
so the splits are one dataset input whose profile gives their sizes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

from .store import get_client

__all__ = ["DatasetRecord", "log_dataset", "DIGEST_LENGTH", "CONTEXT_TRAINING"]

#: Characters of the SHA-256 kept as MLflow's dataset digest (MLflow allows 36; its own datasets use 8).
DIGEST_LENGTH = 16
#: ``mlflow.data.context`` of a trial's data set (the context ``mlflow.log_input`` users write for training).
CONTEXT_TRAINING = "training"
_CONTEXT_TAG = "mlflow.data.context"   # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT


@dataclass(frozen=True)
class DatasetRecord:
    """One trial's data set.

    Attributes:
        name: the data set's name (``"MNIST"``, ``"digits"``).
        sha256: SHA-256 (hex) of its content (``workers.provenance.data_identity``).
        source: where it was read (a folder, or a loader such as ``sklearn.datasets.load_digits``).
        splits: ``{"train": n, "validation": n, "test": n}`` (samples per split), empty when unknown.
        details: further facts for the profile (e.g. ``{"val_fraction": 0.15, "split_seed": 3}``).
    """

    name: str
    sha256: str
    source: str
    splits: Mapping[str, int] = field(default_factory=dict)
    details: Mapping[str, object] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.sha256[:DIGEST_LENGTH]

    def profile(self) -> str:
        """The dataset's profile (JSON): ``num_rows`` (all splits), ``<split>_rows`` each, the full SHA-256."""
        out: dict[str, object] = {"sha256": self.sha256}
        if self.splits:
            out["num_rows"] = int(sum(self.splits.values()))
            out.update({f"{split}_rows": int(n) for split, n in self.splits.items()})
        out.update(self.details)
        return json.dumps(out, sort_keys=True, default=str)


def log_dataset(tracking_uri: str, run_id: str, record: DatasetRecord, *, context: str = CONTEXT_TRAINING) -> None:
    """Link ``record`` to the run as a dataset input (``MlflowClient.log_inputs``), with ``context``.

    The source type is ``"local"`` for a folder and ``"code"`` for a loader function (MLflow's names).
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source_type = "local" if os.path.isabs(record.source) else "code"
    dataset = Dataset(name=record.name, digest=record.digest, source_type=source_type,
                      source=json.dumps({"uri": record.source}), profile=record.profile())
    get_client(tracking_uri).log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag(_CONTEXT_TAG, context)])])
