"""Fixed-value schemes: every entry of the tensor gets the same number.

They draw nothing, so any dtype works, integers and bools included. Used on a
kernel they leave every unit identical (no symmetry breaking): they are meant
for biases, normalization scales and controlled experiments.
"""
import numbers

import keras
from keras import ops

from .base import KitInitializer, check_number, check_representable


@keras.saving.register_keras_serializable(package="keras_initkit")
class Constant(KitInitializer):
    """Every entry equals `value`.

    Args:
        value: A finite real number.

    Returns:
        Called with `(shape, dtype=None)`: a tensor filled with `value`.

    Example:
    >>> Constant(0.1)((2, 3))  # a bias of 0.1 keeps ReLU units alive at the start
    """

    formula = "w = value"
    random = False

    def __init__(self, value=0.0):
        super().__init__()
        self.value = check_number("value", value)
        if isinstance(value, numbers.Integral):
            self.value = int(value)  # exact for an integer dtype: float rounds above 2**24

    def generate(self, shape, dtype):
        check_representable("value", self.value, dtype)
        # An int only for an integer dtype: TensorFlow refuses a Python int beyond int64 for
        # a float one (2**63 into bfloat16).
        value = float(self.value) if keras.backend.is_float_dtype(dtype) else self.value
        return ops.full(shape, value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


@keras.saving.register_keras_serializable(package="keras_initkit")
class Zeros(Constant):
    """Every entry is 0.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of zeros.

    Example:
    >>> keras.layers.Dense(4, bias_initializer="kit_zeros")
    """

    formula = "w = 0"
    value = 0.0

    def __init__(self):
        KitInitializer.__init__(self)

    def generate(self, shape, dtype):
        return ops.zeros(shape, dtype=dtype)  # tf.zeros' fast path; ops.full converts the value

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="keras_initkit")
class Ones(Constant):
    """Every entry is 1.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of ones.

    Example:
    >>> keras.layers.BatchNormalization(gamma_initializer="kit_ones")
    """

    formula = "w = 1"
    value = 1.0

    def __init__(self):
        KitInitializer.__init__(self)

    def generate(self, shape, dtype):
        return ops.ones(shape, dtype=dtype)

    def get_config(self):
        return {}
