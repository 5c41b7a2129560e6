import math

import keras
import numpy as np
import pytest
import scipy.integrate
import scipy.special

import keras_initkit
from keras_initkit.fans import GAIN_NAMES, compute_fans


@pytest.mark.parametrize("shape,fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((64, 32), (64, 32)), ((5, 16, 8), (80, 40)),
    ((3, 3, 64, 128), (576, 1152)), ((2, 3, 4, 5, 6), (120, 144)), ((0, 4), (0, 4)),
])
def test_fans_follow_keras(shape, fans):
    assert compute_fans(shape) == fans
    from keras.src.initializers.random_initializers import compute_fans as keras_fans

    assert keras_fans(shape) == fans


def test_axes_override_the_fans():
    assert compute_fans((4, 5, 6), input_axes=[0], output_axes=[1, 2]) == (4, 30)
    assert compute_fans((4, 5, 6), input_axes=[-3, -2], output_axes=-1) == (20, 6)
    with pytest.raises(ValueError, match="axis 3"):
        compute_fans((4, 5, 6), input_axes=[3], output_axes=[0])
    with pytest.raises(ValueError, match="input_axes"):
        compute_fans((4, 5), input_axes="0", output_axes=[1])


TORCH = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2),
         "selu": 0.75, "leaky_relu": math.sqrt(2 / (1 + 0.01**2))}


@pytest.mark.parametrize("name,value", TORCH.items())
def test_gains_torch_defines_are_torch_values(name, value):
    assert keras_initkit.gain(name) == pytest.approx(value, rel=1e-15)


def test_leaky_relu_slope():
    assert keras_initkit.gain("leaky_relu", negative_slope=0.2) == pytest.approx(
        math.sqrt(2 / 1.04), rel=1e-15)


def _quad_gain(f):
    def weighted(z):  # f(z)^2 under the standard normal density
        return f(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    second = scipy.integrate.quad(weighted, -math.inf, math.inf, points=None, limit=200)[0]
    return 1 / math.sqrt(second)


REFERENCE = {
    "elu": lambda z: z if z > 0 else math.expm1(z),
    "gelu": lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2))),
    "silu": lambda z: z * scipy.special.expit(z),
    "swish": lambda z: z * scipy.special.expit(z),
    "softplus": lambda z: math.log1p(math.exp(-abs(z))) + max(z, 0),
}


@pytest.mark.parametrize("name", REFERENCE)
def test_numeric_gains_match_adaptive_quadrature(name):
    assert keras_initkit.gain(name) == pytest.approx(_quad_gain(REFERENCE[name]), rel=1e-6)


def test_elu_alpha_and_gelu_approximation_change_the_gain():
    assert keras_initkit.gain("elu", alpha=0.5) == pytest.approx(
        _quad_gain(lambda z: z if z > 0 else 0.5 * math.expm1(z)), rel=1e-6)
    assert keras_initkit.gain("gelu", approximate=True) != keras_initkit.gain("gelu")


def test_a_callable_is_integrated_numerically():
    assert keras_initkit.gain(keras.activations.relu) == pytest.approx(math.sqrt(2), rel=1e-6)
    assert keras_initkit.gain(lambda x: 3 * x) == pytest.approx(1 / 3, rel=1e-6)
    assert keras_initkit.gain(keras.activations.tanh) == pytest.approx(
        _quad_gain(math.tanh), rel=1e-6)


def test_every_listed_name_has_a_positive_gain():
    for name in GAIN_NAMES:
        assert keras_initkit.gain(name) > 0


@pytest.mark.parametrize("args,kwargs,error,word", [
    (("relux",), {}, ValueError, "leaky_relu"),
    (("relu",), {"negative_slope": 0.1}, ValueError, "negative_slope"),
    (("leaky_relu",), {"negative_slope": "a"}, ValueError, "negative_slope"),
    ((3,), {}, TypeError, "activation"),
    ((lambda x: x * 0,), {}, ValueError, "second moment"),
    ((np.tanh,), {"alpha": 1}, ValueError, "partial"),
    (("gelu",), {"approximate": "none"}, ValueError, "approximate"),
])
def test_bad_gain_arguments(args, kwargs, error, word):
    with pytest.raises(error, match=word):
        keras_initkit.gain(*args, **kwargs)


@pytest.mark.parametrize("activation,params", [("elu", {"alpha": 1e300}),
                                               ("leaky_relu", {"negative_slope": 1e200})])
def test_a_gain_that_is_not_a_positive_finite_number_is_refused(activation, params):
    with pytest.raises(ValueError, match=activation):
        keras_initkit.gain(activation, **params)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4),
                              keras.layers.LeakyReLU(negative_slope=1e200)])
    with pytest.raises(ValueError, match="leaky_relu"):
        keras_initkit.reinitialize(model)
