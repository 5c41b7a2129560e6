"""Bad arguments fail early with an error that names the argument, the value and what is allowed."""
import keras
import numpy as np
import pytest

import keras_initkit
from keras_initkit import initializers as I

CONSTRUCTION = [  # (factory, exception, words the message must hold)
    (lambda: I.VarianceScaling(scale=0), ValueError, ["scale", "0", "> 0"]),
    (lambda: I.VarianceScaling(scale=-1.5), ValueError, ["scale", "-1.5"]),
    (lambda: I.VarianceScaling(mode="fan_sum"), ValueError, ["mode", "fan_sum", "fan_avg"]),
    (lambda: I.VarianceScaling(distribution="cauchy"), ValueError, ["distribution", "cauchy",
                                                                    "truncated_normal"]),
    (lambda: I.VarianceScaling(activation="relux"), ValueError, ["relux", "relu"]),
    (lambda: I.VarianceScaling(activation="tanh", activation_params={"negative_slope": 0.1}),
     ValueError, ["negative_slope", "tanh"]),
    (lambda: I.VarianceScaling(activation=np.tanh), TypeError, ["activation", "gain"]),
    (lambda: I.VarianceScaling(input_axes=[0]), ValueError, ["input_axes", "output_axes"]),
    (lambda: I.Orthogonal(gain=0), ValueError, ["gain", "0"]),
    (lambda: I.Orthogonal(gain=-1), ValueError, ["gain", "-1"]),
    (lambda: I.Identity(gain=float("nan")), ValueError, ["gain", "finite"]),
    (lambda: I.DeltaOrthogonal(gain="big"), ValueError, ["gain", "big", "real number"]),
    (lambda: I.Sparse(sparsity=1.0), ValueError, ["sparsity", "[0, 1)"]),
    (lambda: I.Sparse(sparsity=-0.1), ValueError, ["sparsity", "-0.1"]),
    (lambda: I.RandomNormal(stddev=0), ValueError, ["stddev", "0"]),
    (lambda: I.RandomUniform(minval=1, maxval=1), ValueError, ["maxval", "minval"]),
    (lambda: I.HeNormal(seed=1.5), ValueError, ["seed", "1.5", "integer"]),
    (lambda: I.HeNormal(seed="7"), ValueError, ["seed", "'7'", "integer"]),
    (lambda: I.HeNormal(seed=True), ValueError, ["seed", "True"]),
    (lambda: I.Orthogonal(seed=-3), ValueError, ["seed", "-3"]),
    (lambda: I.ICNR(scale=0), ValueError, ["scale", "0", "integer >= 1"]),
    (lambda: I.ICNR(scale=2.0), ValueError, ["scale", "2.0"]),
    (lambda: I.ICNR(initializer="kit_nope"), ValueError, ["initializer", "kit_nope"]),
    (lambda: I.ConvolutionAware(eps_std=-1), ValueError, ["eps_std", ">= 0"]),
    (lambda: I.Constant(value=None), ValueError, ["value", "None"]),
    (lambda: I.Pretrained("weights.txt", "w"), ValueError, ["path", "weights.txt", ".npz"]),
    (lambda: I.Pretrained("weights.npz", ""), ValueError, ["key"]),
    (lambda: I.Pretrained("weights.npz", 3), TypeError, ["key", "3"]),
    (lambda: I.HeNormal(input_axes=["0"], output_axes=[1]), ValueError, ["input_axes", "'0'"]),
    (lambda: I.HeNormal(input_axes=[0, 0], output_axes=[1]), ValueError,
     ["input_axes", "more than once", "[0, 0]"]),
    (lambda: I.VarianceScaling(activation_params={"alpha": 1.0}), ValueError,
     ["activation_params", "alpha", "activation=None"]),
    (lambda: I.VarianceScaling(activation="gelu", activation_params={"approximate": "none"}),
     ValueError, ["approximate", "'none'"]),
]


@pytest.mark.parametrize("factory,error,words", CONSTRUCTION)
def test_bad_arguments_fail_at_construction(factory, error, words):
    with pytest.raises(error) as info:
        factory()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("init", [I.HeNormal(), I.RandomUniform(), I.Orthogonal(), I.Sparse()],
                         ids=lambda i: type(i).__name__)
@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_a_random_scheme_refuses_an_integer_or_bool_dtype(init, dtype):
    with pytest.raises(TypeError, match=f"dtype={dtype}"):
        init((4, 4), dtype=dtype)


@pytest.mark.parametrize("init,shape,words", [
    (I.Orthogonal(), (5,), ["rank 2", "(5,)"]),
    (I.Identity(), (5,), ["rank 2"]),
    (I.Identity(), (2, 2, 4, 4), ["odd", "(2, 2)"]),
    (I.DeltaOrthogonal(), (3, 4, 4, 4), ["odd", "(3, 4)"]),
    (I.DeltaOrthogonal(), (4, 4), ["rank 3"]),
    (I.ICNR(scale=2), (3, 3, 4, 6), ["divisible", "4"]),
    (I.ConvolutionAware(), (2, 2, 2, 2, 2, 2), ["rank 6"]),
    (I.HeNormal(), (4, -1), ["negative"]),
    (I.HeNormal(input_axes=[0, -2], output_axes=[1]), (256, 64), ["more than once", "rank 2"]),
    (I.Orthogonal(), (0,), ["rank 2"]),
], ids=str)
def test_a_shape_the_scheme_cannot_fill_fails_at_call(init, shape, words):
    with pytest.raises(ValueError) as info:
        init(shape)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_pretrained_missing_file_key_and_shape(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        I.Pretrained(str(tmp_path / "gone.npz"), "w")((2, 2))
    path = tmp_path / "w.npz"
    np.savez(path, kernel=np.ones((3, 4), "float32"))
    with pytest.raises(ValueError, match="Did you mean \\['kernel'\\]"):
        I.Pretrained(str(path), "kernal")((3, 4))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        I.Pretrained(str(path), "kernel")((4, 3))


def test_a_saved_model_naming_a_deleted_pretrained_file_still_builds_the_initializer(tmp_path):
    init = keras.initializers.deserialize(keras.initializers.serialize(
        I.Pretrained(str(tmp_path / "deleted.npz"), "w")))
    assert init.get_config()["key"] == "w"


@pytest.mark.parametrize("init", [I.Constant(0.5), I.Identity(gain=1.5)], ids=repr)
def test_a_fraction_is_not_truncated_into_an_integer_dtype(init):
    with pytest.raises(TypeError, match="int32"):
        init((3, 3), dtype="int32")
    assert keras.backend.standardize_dtype(type(init)(2)((3, 3), dtype="int32").dtype) == "int32"


@pytest.mark.parametrize("init,dtype", [
    (I.Constant(-1), "uint8"), (I.Constant(300), "int8"), (I.Constant(1e6), "float16"),
    (I.Constant(2), "bool"), (I.Identity(gain=7e4), "float16"),
    (I.RandomNormal(mean=1e5), "float16"), (I.TruncatedNormal(stddev=2e4), "float16"),
    (I.RandomUniform(-1e5, 0), "float16"),
], ids=str)
def test_a_value_the_dtype_cannot_hold_is_refused(init, dtype):
    with pytest.raises(TypeError, match=f"dtype={dtype}"):
        init((2, 2), dtype=dtype)


@pytest.mark.parametrize("init", [I.Identity(), I.DeltaOrthogonal(), I.ICNR(scale=2),
                                  I.ConvolutionAware()], ids=repr)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (3, 0, 4, 4), (3, 3, 0, 4)])
def test_an_empty_conv_shape_gives_an_empty_tensor(init, shape):
    assert tuple(init(shape).shape) == shape


# ---- found by the property tests (tests/properties): each case below crashed with another
# exception type, returned inf, NaN or zeros, or rounded an argument to float32.

@pytest.mark.parametrize("factory,error,words", [
    (lambda: I.Constant(10**400), ValueError, ["value", "finite"]),  # was OverflowError
    (lambda: I.Orthogonal(gain=-(10**400)), ValueError, ["gain", "finite"]),
    (lambda: I.VarianceScaling(mode=np.array(["fan_in"])), ValueError, ["mode", "fan_in"]),
    (lambda: I.VarianceScaling(activation="relu", activation_params={1: 2}), TypeError,
     ["activation_params"]),
    (lambda: I.VarianceScaling(activation="elu", activation_params={"alpha": 1e300}), ValueError,
     ["activation_params", "alpha"]),  # its gain was 0: all-zero weights
    (lambda: I.VarianceScaling(activation="leaky_relu",
                               activation_params={"negative_slope": 1e200}),
     ValueError, ["activation_params", "negative_slope"]),  # was OverflowError
    (lambda: I.VarianceScaling(activation="leaky_relu", activation_params={"alpha": 0.1}),
     ValueError, ["activation_params", "alpha"]),
    (lambda: I.ICNR(initializer=None), TypeError, ["initializer", "None"]),  # failed at call
    (lambda: I.ICNR(initializer=np.float32(0.5)), TypeError, ["initializer"]),
    (lambda: I.ICNR(initializer=lambda shape, dtype=None: np.zeros(shape)), TypeError,
     ["initializer", "register_initializer"]),
], ids=range(10))
def test_found_by_properties_at_construction(factory, error, words):
    with pytest.raises(error) as info:
        factory()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("init,shape,dtype,error,words", [
    (I.HeNormal(), (2.5, 3), None, ValueError, ["shape", "2.5"]),  # was truncated to 2
    (I.HeNormal(), ("3",), None, ValueError, ["shape"]),  # was parsed
    (I.Zeros(), (True, 2), None, ValueError, ["shape", "True"]),  # was read as 1
    (I.Zeros(), ("a",), None, ValueError, ["shape"]),  # "invalid literal for int()"
    (I.Zeros(), (0, 2**63), None, ValueError, ["shape", "2**63"]),  # TensorFlow's error
    (I.Ones(), (2**40, 2**40, 2**40), None, ValueError, ["shape"]),  # InvalidArgumentError
    (I.Constant(1), (2,), "complex64", TypeError, ["dtype=complex64"]),  # "Invalid integer..."
    (I.Identity(), (2, 2), "string", TypeError, ["dtype=string"]),
    (I.Constant(1), (2,), "int4", TypeError, ["dtype", "int4"]),
    (I.RandomNormal(stddev=1e-40), (4, 4), "float32", TypeError, ["stddev", "dtype=float32"]),
    (I.Sparse(stddev=1e300), (4, 4), "float32", TypeError, ["stddev", "dtype=float32"]),  # inf
    (I.RandomUniform(-1e308, 1e308), (4,), "float64", TypeError, ["maxval - minval"]),  # NaN
    (I.RandomUniform(0.0, 1e-40), (4,), "float32", TypeError, ["minval", "float32"]),
    (I.VarianceScaling(scale=1e300), (4, 4), "float32", TypeError, ["scale", "float32"]),  # inf
    (I.VarianceScaling(scale=1e-300), (4, 4), "float32", TypeError, ["scale", "float32"]),  # 0
    (I.Orthogonal(gain=1e300), (4, 4), "float32", TypeError, ["gain", "float32"]),  # inf
    (I.DeltaOrthogonal(gain=1e-300), (3, 4, 4), "float32", TypeError, ["gain", "float32"]),
    (I.Constant(1e-40), (2,), "float32", TypeError, ["value", "float32"]),  # flushed to 0
], ids=range(18))
def test_found_by_properties_at_call(init, shape, dtype, error, words):
    with pytest.raises(error) as info:
        init(shape, dtype=dtype)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def numpy_of(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


@pytest.mark.parametrize("eps_std", [10.0, 1e20, 1e308])
def test_convolution_aware_stays_finite_and_he_scaled_for_any_noise(eps_std):
    # A noise std of 1e20 overflowed the variance to inf, and the kernel came out all zeros.
    shape = (3, 3, 4, 8)
    for dtype in ("float16", "float32", "float64"):
        k = numpy_of(I.ConvolutionAware(eps_std=eps_std, seed=1)(shape, dtype=dtype))
        np.testing.assert_allclose(k.var(), 2.0 / 36, rtol=2e-3)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1, 1)])
def test_convolution_aware_of_one_entry_is_the_he_std(shape):
    # One entry has variance 0: it was scaled by 1 / sqrt(1e-30), inf in float16.
    for dtype in ("float16", "float32"):
        np.testing.assert_allclose(abs(numpy_of(I.ConvolutionAware(seed=2)(shape, dtype=dtype))),
                                   np.sqrt(2.0), rtol=1e-3)


def test_float64_arguments_are_not_rounded_to_float32():
    # A Python float cast by TensorFlow goes through float32 first: Identity's gain and
    # RandomUniform's bounds lost their digits beyond the 7th in float64.
    assert numpy_of(I.Identity(gain=0.1)((2, 2), dtype="float64"))[0, 0] == 0.1
    low, high = 0.1, 0.1 + 1e-9
    x = numpy_of(I.RandomUniform(low, high, seed=3)((1000,), dtype="float64"))
    assert low <= x.min() and x.max() <= high and x.std() > 0


def test_pretrained_checks_an_empty_weight_against_its_file_too(tmp_path):
    # An empty shape returned zeros before the file was read, whatever the file held.
    with pytest.raises(ValueError, match="does not exist"):
        I.Pretrained(str(tmp_path / "gone.npz"), "w")((0, 3))
    np.savez(tmp_path / "w.npz", w=np.ones((2, 3)), empty=np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(0, 3\)"):
        I.Pretrained(str(tmp_path / "w.npz"), "w")((0, 3))
    assert tuple(I.Pretrained(str(tmp_path / "w.npz"), "empty")((0, 3)).shape) == (0, 3)


def test_an_alias_that_needs_arguments_says_so():
    # "kit_pretrained" as a plain string: Python's "missing 2 required positional arguments"
    # came from inside __init__ before.
    with pytest.raises(ValueError, match="Pretrained config lacks the required argument"
                                         r"\(s\) 'path', 'key'"):
        keras.layers.Dense(3, kernel_initializer="kit_pretrained")
    with pytest.raises(TypeError, match="'kit_pretrained' cannot be built without arguments"):
        keras_initkit.get("kit_pretrained")
