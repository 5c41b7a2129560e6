"""One class per initialization scheme; the `kit_*` aliases map onto these."""
from .base import KitInitializer
from .constant import Constant, Ones, Zeros
from .orthogonal import Orthogonal
from .pretrained import Pretrained
from .random import RandomNormal, RandomUniform, TruncatedNormal
from .structured import ICNR, ConvolutionAware, DeltaOrthogonal, Identity, Sparse, ZerO
from .variance_scaling import (
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    LecunNormal,
    LecunUniform,
    VarianceScaling,
)

__all__ = [
    "KitInitializer", "Constant", "Ones", "Zeros", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal",
    "HeUniform", "LecunNormal", "LecunUniform", "Orthogonal", "Identity", "DeltaOrthogonal",
    "ConvolutionAware", "ICNR", "Sparse", "ZerO", "Pretrained",
]
