"""Optimizer studies: the study-file schema, search spaces, the Ray Tune runner and the ``amgt-study`` CLI.

Where each concern lives (one module each):

==================  ===========================================================================
``config.py``       the study file's schema (pydantic): fields, ranges, kind rules
``loading.py``      reading study files: bounded YAML, ``--set`` overrides, dumping
``spaces.py``       search-space dimensions and the default space of every optimizer
``catalog.py``      the optimizers and benchmarks a study may name, and where each came from
``identity.py``     the study's identity (what changes results) and its fingerprint
``plan.py``         what will run: ``PlannedTrial``, ``StudyContext``, seeds, the plan of each phase (pure)
``preflight.py``    data and resources, checked before anything is written
``stores.py``       the MLflow/Optuna pair: resolution, checks, the study's record, agreement
``search.py``       Optuna: samplers, budget counting, interrupted trials, the best configuration
``searcher.py``     the Ray Tune searcher driving one Optuna study per optimizer (ask-and-tell)
``execution.py``    Ray: start/join, the trainable, running a Tuner
``trainable.py``    what runs in a Ray worker: one trial and its MLflow run
``attempts.py``     closing the runs attempts left RUNNING (by identity, never by key)
``phases.py``       phase parent runs in MLflow and the count of planned trials
``progress.py``     what the terminal shows while a study runs
``status.py``       where a study stands, from its stores alone
``runner.py``       the order of the steps: ``run_study``, ``resume_study``, ``plan_study``
``formatting.py``   terminal text of plans and statuses (the CLI's)
``cli.py``          the ``amgt-study`` command
==================  ===========================================================================

>>> from study import load_study, run_study
>>> cfg = load_study("studies/quickstart.yaml")
>>> run_study(cfg)            # doctest: +SKIP
"""

from .config import StudyConfig, StudyConfigError
from .errors import StoresDisagreeError, StudyIdentityError, StudyRunError
from .loading import load_study, parse_study
from .spaces import Dimension, default_space

__all__ = [
    "Dimension",
    "StudyConfig",
    "StudyConfigError",
    "StudyRunError",
    "StudyIdentityError",
    "StoresDisagreeError",
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
