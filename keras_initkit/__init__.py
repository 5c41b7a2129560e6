"""keras_initkit: initializers for every scheme, and diagnostics that say why a network
won't train.

Importing the package registers every `kit_*` alias with Keras, so that
`keras.layers.Dense(64, kernel_initializer="kit_he")` works.
"""
from . import callbacks, initializers
from .diagnostics import DiagnosisReport, Finding, diagnose
from .fans import compute_fans, gain
from .model_init import audit, lsuv, mimetic, mup, reinitialize, transfer_weights, weight_norm_init
from .registry import get, list_initializers, register_initializer

__version__ = "0.1.0"

__all__ = ["callbacks", "initializers", "compute_fans", "gain", "get", "list_initializers",
           "register_initializer", "diagnose", "DiagnosisReport", "Finding", "reinitialize",
           "audit", "lsuv", "mup", "mimetic", "weight_norm_init", "transfer_weights"]
