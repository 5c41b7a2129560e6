"""Whole-model initialization: reinitialize("auto"), LSUV, and transfer of pretrained weights."""
from .lsuv import lsuv
from .recipes import RECIPES, audit
from .reinitialize import reinitialize
from .report import Rows
from .transfer import TransferReport, transfer_weights

__all__ = ["reinitialize", "audit", "RECIPES", "lsuv", "transfer_weights", "TransferReport", "Rows"]
