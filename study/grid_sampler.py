"""Optuna's GridSampler for a search whose trials are asked and told one by one (study/searcher.py).

``optuna.samplers.GridSampler.after_trial`` calls ``Study.stop()`` once every grid point has been visited, and
Optuna allows ``Study.stop`` only inside ``Study.optimize``; with ask-and-tell it raises ``RuntimeError`` from
``Study.tell`` (after the trial is recorded COMPLETE), which Ray Tune then reported as the trial's failure. Here
the study's budget (``trials_per_optimizer``) ends the search, so the stop is not needed.
"""

from __future__ import annotations

from optuna.samplers import GridSampler

__all__ = ["AskTellGridSampler"]


class AskTellGridSampler(GridSampler):
    """``GridSampler`` that never calls ``Study.stop`` (see the module docstring); sampling is unchanged: unvisited
    grid points in a seeded random order, then (budget larger than the grid) visited ones again."""

    def after_trial(self, study, trial, state, values) -> None:
        return None
