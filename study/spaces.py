"""Search spaces: one dimension type, the default space of every optimizer, and their Optuna forms.

The defaults follow two fairness rules from Choi et al. 2019 ("On Empirical Comparisons of Optimizers
for Deep Learning"), recorded in every study's parent run (``fairness.json``) so a report can show them:

* **inclusion-preserving**: when one optimizer is a special case of another, the general one's space
  contains the special one's.  AMGT with γ = τ = λ = 0 *is* Adam (docs/amgt-spec.md), so AMGT searches
  the same ``lr`` range as Adam and τ, λ (``lr_decay``), γ (``gamma``) on ranges that start at 0; the
  single-mechanism-off variants search the same space less their pinned dimension.
* **equal budget**: every optimizer of a study gets the same number of trials
  (``search.trials_per_optimizer``); the schema has no per-optimizer budget.

Default spaces (η0 is ``lr``):

==========================================  ===================================================
optimizer                                   dimensions
==========================================  ===================================================
adam, adamw, amsgrad, adabelief, rmsprop    lr log-uniform [1e-5, 1e-1]
sgd (momentum 0.9)                          lr log-uniform [1e-4, 1]
amgt                                        lr as Adam; tau uniform [0, 0.2]; lr_decay uniform
                                            [0, 1e-3]; gamma uniform [0, 2]
amgt-no-threshold / -no-decay / -no-variance  the amgt space less tau / lr_decay / gamma
any other (an import path such as            lr log-uniform [1e-5, 1e-1] when its signature has
``torch.optim:NAdam``, an entry point)       ``lr``; nothing searched otherwise
==========================================  ===================================================

A study file's ``search_space`` replaces the default; the fairness record (``fairness.json``:
``space_from``, ``search_spaces_given`` / ``search_spaces_defaulted``) says which spaces the study file gave.

The paper's settings (lr 1e-3 for Adam and AMGT, 1e-2 for SGD and RMSProp, τ 0.05–0.1, λ = 1e-4) lie
inside every range, near the log-centre of the lr ranges.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "Dimension",
    "default_space",
    "grid_values",
    "to_optuna_distributions",
    "DEFAULT_LR_ADAPTIVE",
    "DEFAULT_LR_SGD",
]


class Dimension(BaseModel):
    """One search-space dimension.

    Either a numeric range (``low``, ``high``, ``log``; ``type`` ``float`` or ``int``) or a list of
    ``choices`` (``type: categorical``).  Mirrors Optuna's ``FloatDistribution`` / ``IntDistribution`` /
    ``CategoricalDistribution``.

    Raises (``pydantic.ValidationError``): ``low >= high`` (an empty range), ``low <= 0`` on a log
    range, missing bounds, empty ``choices``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "choices" in data and "type" not in data:
            data = {**data, "type": "categorical"}
        return data

    @model_validator(mode="after")
    def _check(self) -> "Dimension":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical dimension needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical dimension takes 'choices' only (no low/high/log)")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} dimension takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError("a numeric dimension needs both 'low' and 'high'")
        for key in ("low", "high"):
            v = getattr(self, key)
            if not math.isfinite(v):
                raise ValueError(f"{key} must be finite, got {v!r}")
        if not self.low < self.high:
            raise ValueError(f"empty search range: low={self.low!r} must be < high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low!r}")
        return self

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this dimension (inclusive bounds)."""
        if self.type == "categorical":
            return value in self.choices
        return self.low <= value <= self.high

    def describe(self) -> str:
        """A short human-readable form, e.g. ``log-uniform [1e-05, 0.1]``."""
        if self.type == "categorical":
            return f"choice {list(self.choices)}"
        kind = ("log-" if self.log else "") + ("uniform" if self.type == "float" else "int")
        return f"{kind} [{self.low:g}, {self.high:g}]"


DEFAULT_LR_ADAPTIVE = Dimension(low=1e-5, high=1e-1, log=True)
DEFAULT_LR_SGD = Dimension(low=1e-4, high=1.0, log=True)
_TAU = Dimension(low=0.0, high=0.2)
_LR_DECAY = Dimension(low=0.0, high=1e-3)
_GAMMA = Dimension(low=0.0, high=2.0)

_AMGT = {"lr": DEFAULT_LR_ADAPTIVE, "tau": _TAU, "lr_decay": _LR_DECAY, "gamma": _GAMMA}
_DEFAULTS: dict[str, dict[str, Dimension]] = {
    "adam": {"lr": DEFAULT_LR_ADAPTIVE},
    "adamw": {"lr": DEFAULT_LR_ADAPTIVE},
    "amsgrad": {"lr": DEFAULT_LR_ADAPTIVE},
    "adabelief": {"lr": DEFAULT_LR_ADAPTIVE},
    "rmsprop": {"lr": DEFAULT_LR_ADAPTIVE},
    "sgd": {"lr": DEFAULT_LR_SGD},
    "amgt": dict(_AMGT),
    "amgt-no-threshold": {k: v for k, v in _AMGT.items() if k != "tau"},
    "amgt-no-decay": {k: v for k, v in _AMGT.items() if k != "lr_decay"},
    "amgt-no-variance": {k: v for k, v in _AMGT.items() if k != "gamma"},
}


def default_space(optimizer: str) -> dict[str, Dimension]:
    """The default search space of ``optimizer`` (a registry name or an import path), as
    ``{hyperparameter: Dimension}``.

    An optimizer without an entry here (registered in :mod:`amgt`, an entry point or an import path) gets
    ``lr`` on the adaptive range (Adam's, :data:`DEFAULT_LR_ADAPTIVE`) when it takes ``lr``, else nothing.

    Raises:
        ValueError: ``optimizer`` is not registered (lists the valid names) or cannot be loaded.
    """
    from amgt import get_optimizer_spec

    spec = get_optimizer_spec(optimizer)  # raises with the valid names
    if optimizer in _DEFAULTS:
        return dict(_DEFAULTS[optimizer])
    return {"lr": DEFAULT_LR_ADAPTIVE} if "lr" in spec.hyperparameters else {}


def to_optuna_distributions(space: dict[str, Dimension]) -> dict[str, Any]:
    """``{name: optuna.distributions.BaseDistribution}`` for ``OptunaSearch(space=...)``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.type == "categorical":
            out[name] = CategoricalDistribution(list(dim.choices))
        elif dim.type == "int":
            out[name] = IntDistribution(int(dim.low), int(dim.high), log=dim.log)
        else:
            out[name] = FloatDistribution(dim.low, dim.high, log=dim.log)
    return out


def grid_values(dim: Dimension, points: int) -> list[Any]:
    """``points`` evenly spaced values of ``dim`` (geometric on a log range; the choices if categorical).

    Used by the grid sampler and by learning-rate sensitivity grids.
    """
    if dim.type == "categorical":
        return list(dim.choices)
    if points == 1:
        vals = [math.sqrt(dim.low * dim.high) if dim.log else (dim.low + dim.high) / 2]
    elif dim.log:
        a, b = math.log10(dim.low), math.log10(dim.high)
        vals = [10 ** (a + (b - a) * i / (points - 1)) for i in range(points)]
    else:
        vals = [dim.low + (dim.high - dim.low) * i / (points - 1) for i in range(points)]
    if dim.type == "int":
        return sorted({int(round(v)) for v in vals})
    return [float(f"{v:.6g}") for v in vals]
