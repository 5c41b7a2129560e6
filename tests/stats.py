"""Tolerances derived from the sample size, for the distribution tests."""
import keras
import numpy as np

SIGMAS = 5.0  # a correct sampler fails a 5-standard-error check with probability < 1e-6


def assert_mean(x, mean):
    x = np.ravel(x)
    se = x.std() / np.sqrt(x.size)
    assert abs(x.mean() - mean) <= SIGMAS * se + 1e-12, (x.mean(), mean, se)


def assert_variance(x, variance):
    """Sample variance within 5 standard errors; SE = sqrt((m4 - s^4) / n), from the sample."""
    x = np.ravel(x) - np.mean(x)
    s2 = np.mean(x**2)
    se = np.sqrt((np.mean(x**4) - s2**2) / x.size)
    assert abs(s2 - variance) <= SIGMAS * se, (s2, variance, se)


def to_numpy(x):
    """A tensor of any float dtype as float64 NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")), dtype=np.float64)
