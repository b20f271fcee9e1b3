"""AMGT as a ``torch.optim.Optimizer``, and the registry of the baselines it is compared with.

>>> from amgt import AMGT, build_optimizer, available_optimizers
"""

from ._functional import amgt_update, state_dtype
from ._impl import optimizer_implementation
from .adabelief import AdaBelief, adabelief_update
from .optimizer import AMGT
from .registry import (
    ENTRY_POINT_GROUP,
    OptimizerSpec,
    available_optimizers,
    build_optimizer,
    get_optimizer_spec,
    optimizer_from_import_path,
    register_optimizer,
)

__all__ = [
    "AMGT",
    "AdaBelief",
    "ENTRY_POINT_GROUP",
    "adabelief_update",
    "OptimizerSpec",
    "amgt_update",
    "available_optimizers",
    "build_optimizer",
    "get_optimizer_spec",
    "optimizer_from_import_path",
    "optimizer_implementation",
    "register_optimizer",
    "state_dtype",
]
