"""The study's errors.  Every message is one line that says what is wrong and what to do; the CLI prints
it after ``error:`` and exits 1 (``study.config.StudyConfigError`` is the study file's own error)."""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["StudyRunError", "StudyIdentityError", "StoresDisagreeError", "one_line", "clip_repr"]

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 6, 6, 3


class StudyRunError(RuntimeError):
    """A study that cannot start or continue (a store, Ray, the data); the message says what to do."""


class StudyIdentityError(StudyRunError):
    """A study name that already holds results of other settings (study/identity.py)."""


class StoresDisagreeError(StudyRunError):
    """The MLflow store and the Optuna storage do not hold the same study."""


def one_line(obj: object, limit: int = 300) -> str:
    """``obj`` as one line of at most ``limit`` characters (whitespace collapsed, the middle cut)."""
    text = " ".join(str(obj).split())
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3
    return text[:head] + " ... " + text[-(limit - 5 - head):]


def clip_repr(value: Any) -> str:
    """A short ``repr`` of any value (at most ~60 characters per string, 6 items per collection)."""
    return _REPR.repr(value)
