"""Plain random schemes, and the three samplers every random scheme here uses.

The truncated normal is exact: its standard deviation is the one asked for.
A normal truncated to +-2 std keeps only 0.87962566103423978 of the std
(the std of N(0, 1) conditioned on |z| <= 2), so the underlying normal is
widened by 1 / 0.8796... It is sampled by inverting the CDF of a uniform,
`x = sqrt(2) * erfinv(v)`, `v ~ U(-erf(sqrt(2)), erf(sqrt(2)))`, which needs
no rejection loop and runs about twice as fast as TensorFlow's truncated normal.
"""
import math

import keras
from keras import ops

from .base import KitInitializer, check_number, check_representable, check_spread, float_work_dtype

# Std of N(0, 1) truncated to [-2, 2]; the same constant Keras' VarianceScaling uses.
TRUNCATED_STD = 0.87962566103423978
# erf(sqrt(2)) = P(|z| <= 2) for z ~ N(0, 1): the uniform range whose erfinv lands in [-2, 2].
_TWO_SIGMA_MASS = math.erf(math.sqrt(2.0))


def _cast(x, dtype):
    return x if dtype == float_work_dtype(dtype) else ops.cast(x, dtype)


def sample_normal(shape, mean, stddev, dtype, seed):
    work = float_work_dtype(dtype)
    return _cast(keras.random.normal(shape, mean=mean, stddev=stddev, dtype=work, seed=seed), dtype)


def _bound(value, work):
    """A Python float as a tensor of `work`, converted directly. Keras' TensorFlow uniform
    calls tf.cast on a Python float, which goes through float32: it rounds a float64 bound
    to 7 digits and fails on one beyond float32's range (3.4e38) with an unnamed error."""
    return ops.convert_to_tensor(value, dtype=work)


def sample_uniform(shape, minval, maxval, dtype, seed):
    work = float_work_dtype(dtype)
    return _cast(keras.random.uniform(shape, minval=_bound(minval, work),
                                      maxval=_bound(maxval, work), dtype=work, seed=seed), dtype)


def sample_truncated_normal(shape, mean, stddev, dtype, seed):
    """Normal cut at +-2 underlying std, rescaled so that its std is exactly `stddev`."""
    work = float_work_dtype(dtype)
    v = keras.random.uniform(shape, minval=_bound(-_TWO_SIGMA_MASS, work),
                             maxval=_bound(_TWO_SIGMA_MASS, work), dtype=work, seed=seed)
    x = ops.erfinv(v)
    del v  # free it before the next full-size op: peak memory stays at two temporaries
    x = x * (math.sqrt(2.0) * stddev / TRUNCATED_STD)
    if mean:
        x = x + mean
    return _cast(x, dtype)


@keras.saving.register_keras_serializable(package="keras_initkit")
class RandomNormal(KitInitializer):
    """Normal distribution N(mean, stddev^2).

    Args:
        mean: Mean of the values.
        stddev: Standard deviation, > 0.
        seed: None, or a non-negative integer that makes the sequence of draws
            reproducible. Every call draws fresh values either way.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> init = RandomNormal(stddev=0.02, seed=1)
    >>> init((256, 128)).shape
    (256, 128)
    """

    formula = "N(mean, stddev^2)"
    sampler = staticmethod(sample_normal)

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = check_number("mean", mean)
        self.stddev = check_number("stddev", stddev, positive=True)

    def generate(self, shape, dtype):
        check_representable("|mean| + 6 * stddev", abs(self.mean) + 6 * self.stddev, dtype)
        check_spread("stddev", self.stddev, 6 * self.stddev, dtype)
        return self.sampler(shape, self.mean, self.stddev, dtype, self.next_seed())

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_initkit")
class RandomUniform(KitInitializer):
    """Uniform distribution U(minval, maxval).

    Args:
        minval: Lower bound.
        maxval: Upper bound, > minval.
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> RandomUniform(-0.1, 0.1, seed=3)((4, 4)).shape
    (4, 4)
    """

    formula = "U(minval, maxval)"

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = check_number("minval", minval)
        self.maxval = check_number("maxval", maxval)
        if self.maxval <= self.minval:
            raise ValueError(
                f"`maxval` must be greater than `minval`; received minval={self.minval}, "
                f"maxval={self.maxval}."
            )

    def generate(self, shape, dtype):
        check_representable("max(|minval|, |maxval|)", max(abs(self.minval), abs(self.maxval)),
                            dtype)
        # The sampler computes minval + (maxval - minval) * u: the width must fit too.
        width = self.maxval - self.minval
        check_spread("maxval - minval", width, width, dtype)
        return sample_uniform(shape, self.minval, self.maxval, dtype, self.next_seed())

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_initkit")
class TruncatedNormal(RandomNormal):
    """Normal distribution cut at +-2 underlying std, with exactly the std asked for.

    The values lie in `mean +- 2 * stddev / 0.8796` and have standard deviation
    `stddev` exactly. Keras' own `TruncatedNormal(stddev=s)` cuts N(mean, s^2)
    at +-2s and so samples a std of only 0.88 s; this one corrects for the
    truncation, as Keras' `VarianceScaling` does.

    Args:
        mean: Mean of the values.
        stddev: Standard deviation of the sampled values, > 0.
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> TruncatedNormal(stddev=0.02, seed=0)((64, 64)).shape
    (64, 64)
    """

    formula = "N(mean, s^2) cut at +-2s, s = stddev / 0.8796 (exact std)"
    sampler = staticmethod(sample_truncated_normal)
