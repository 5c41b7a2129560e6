"""Whole-model initialization: reinitialize("auto" or a recipe), audit, µP, LSUV, and transfer
of pretrained weights."""
from . import mup
from .lsuv import lsuv, weight_norm_init
from .mimetic import mimetic
from .recipes import RECIPES, audit
from .reinitialize import reinitialize
from .report import Rows
from .transfer import TransferReport, transfer_weights

__all__ = ["reinitialize", "audit", "RECIPES", "mimetic", "weight_norm_init", "mup", "lsuv",
           "transfer_weights", "TransferReport", "Rows"]
