"""Checkpoint hooks: save and restore a trial (model, optimizer, epoch, RNG states, history) so that a
preempted trial resumes where it stopped and ends with the same metrics as an uninterrupted one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

import torch

__all__ = ["CheckpointHook", "DirectoryCheckpoint"]


@runtime_checkable
class CheckpointHook(Protocol):
    """What :func:`workers.run_trial` needs from a checkpoint store.

    ``load()`` is called once at the start (None: start fresh); ``save(state)`` after every epoch, just
    before that epoch's ``report`` call. ``state`` is a dict of plain Python values and tensors:
    ``model``, ``optimizer`` (state dicts), ``epoch`` (completed epochs), ``rng`` (torch CPU/CUDA RNG
    states), ``history`` (per-epoch metric dicts), ``status`` and the loop's counters.
    """

    def save(self, state: dict[str, Any]) -> None: ...

    def load(self) -> Optional[dict[str, Any]]: ...


class DirectoryCheckpoint:
    """A :class:`CheckpointHook` writing ``<path>/checkpoint.pt`` with ``torch.save`` (atomically: a temporary
    file then ``os.replace``) and reading it back with ``torch.load(weights_only=True)`` onto the CPU.

    Args:
        path: a folder (created when needed).
    """

    filename = "checkpoint.pt"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def file(self) -> Path:
        return self.path / self.filename

    def save(self, state: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.file)

    def load(self) -> Optional[dict[str, Any]]:
        if not self.file.is_file():
            return None
        try:
            return torch.load(self.file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a damaged file
            raise ValueError(f"Checkpoint {self.file} cannot be read ({type(exc).__name__}: {exc}); "
                             f"delete it to start the trial afresh") from None

    def __repr__(self) -> str:
        return f"DirectoryCheckpoint({str(self.path)!r})"
