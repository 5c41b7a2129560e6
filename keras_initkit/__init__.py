"""keras_initkit: initializers for every scheme, and diagnostics that say why a network
won't train.

Importing the package registers every `kit_*` alias with Keras, so that
`keras.layers.Dense(64, kernel_initializer="kit_he")` works.
"""
import sys

from . import callbacks, initializers
from .diagnostics import DiagnosisReport, Finding, diagnose
from .fans import compute_fans, gain
from .model_init import audit, lsuv, mimetic, mup, reinitialize, transfer_weights, weight_norm_init
from .registry import get, list_initializers, register_initializer

# `import keras_initkit.mup` and `from keras_initkit.mup import ...`, as the README writes
# `keras_initkit.mup`: the module lives in model_init.
sys.modules[f"{__name__}.mup"] = mup

__version__ = "0.1.0"

__all__ = ["callbacks", "initializers", "compute_fans", "gain", "get", "list_initializers",
           "register_initializer", "diagnose", "DiagnosisReport", "Finding", "reinitialize",
           "audit", "lsuv", "mup", "mimetic", "weight_norm_init", "transfer_weights"]
