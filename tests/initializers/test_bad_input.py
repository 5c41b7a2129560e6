"""Bad arguments fail early with an error that names the argument, the value and what is allowed."""
import keras
import numpy as np
import pytest

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
