"""Optimizer studies: the study-file schema, search spaces, the Ray Tune runner and the ``amgt-study`` CLI.

>>> from study import load_study, run_study
>>> cfg = load_study("studies/quickstart.yaml")
>>> run_study(cfg)            # doctest: +SKIP
"""

from .config import StudyConfig, StudyConfigError, load_study, parse_study
from .spaces import Dimension, default_space

__all__ = [
    "Dimension",
    "StudyConfig",
    "StudyConfigError",
    "default_space",
    "load_study",
    "parse_study",
    "run_study",
    "resume_study",
]


def __getattr__(name):  # the runner imports Ray lazily
    if name in ("run_study", "resume_study"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
