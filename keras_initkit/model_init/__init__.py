"""Whole-model initialization: reinitialize("auto"), LSUV, and transfer of pretrained weights."""
from .lsuv import lsuv
from .reinitialize import reinitialize
from .report import Rows

__all__ = ["reinitialize", "lsuv", "Rows"]
