"""Every scheme's config holds exactly its constructor arguments and round-trips."""
import inspect
import json

import keras
import numpy as np
import pytest

from keras_initkit import initializers as I
from keras_initkit.registry import BUILTIN_ALIASES

NON_DEFAULT = {  # every argument set away from its default, to catch a dropped one
    I.Constant: {"value": 0.3},
    I.RandomNormal: {"mean": 0.1, "stddev": 0.2, "seed": 3},
    I.RandomUniform: {"minval": -0.3, "maxval": 0.1, "seed": 3},
    I.TruncatedNormal: {"mean": 0.1, "stddev": 0.2, "seed": 3},
    I.VarianceScaling: {"scale": 2.5, "mode": "fan_geo_avg", "distribution": "uniform",
                        "activation": "leaky_relu", "activation_params": {"negative_slope": 0.3},
                        "input_axes": [0], "output_axes": [1], "seed": 3},
    I.Orthogonal: {"gain": 1.7, "seed": 3},
    I.Identity: {"gain": 0.5, "groups": 2},
    I.DeltaOrthogonal: {"gain": 1.2, "groups": 2, "seed": 3},
    I.ZerO: {"hadamard_scale": "orthonormal"},
    I.ConvolutionAware: {"eps_std": 0.1, "seed": 3},
    I.ICNR: {"scale": 3, "initializer": I.GlorotUniform(seed=4)},
    I.Sparse: {"sparsity": 0.4, "stddev": 0.3, "seed": 3},
    I.Pretrained: {"path": "weights.npz", "key": "dense/kernel"},
}
for cls in (I.GlorotUniform, I.GlorotNormal, I.HeNormal, I.HeUniform, I.LecunNormal,
            I.LecunUniform):
    NON_DEFAULT[cls] = {"seed": 3, "input_axes": [0, 1], "output_axes": [2]}
NON_DEFAULT[I.Zeros] = NON_DEFAULT[I.Ones] = {}


def test_every_aliased_class_is_covered():
    assert set(BUILTIN_ALIASES.values()) == set(NON_DEFAULT)


@pytest.mark.parametrize("cls", list(NON_DEFAULT), ids=lambda c: c.__name__)
def test_config_is_exactly_the_constructor_arguments(cls):
    init = cls(**NON_DEFAULT[cls])
    config = init.get_config()
    # Beside its arguments, Pretrained's config carries the seal that marks it as this
    # process's own (test_hostile_files.py).
    extra = {"seal"} if cls is I.Pretrained else set()
    assert set(config) == set(inspect.signature(cls.__init__).parameters) - {"self"} | extra
    json.dumps(config)  # serializable as it stands
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.get_config() == config
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert type(restored) is cls and restored.get_config() == config


@pytest.mark.parametrize("cls", [c for c in NON_DEFAULT if c is not I.Pretrained],
                         ids=lambda c: c.__name__)
def test_a_seeded_clone_draws_the_same_sequence(cls):
    kwargs = dict(NON_DEFAULT[cls])
    kwargs.pop("input_axes", None), kwargs.pop("output_axes", None)
    if cls is I.VarianceScaling:
        kwargs["input_axes"], kwargs["output_axes"] = [0, 1, 2], [3]
    shape = (3, 3, 4, 6) if cls is not I.ICNR else (3, 3, 4, 18)
    a, b = cls(**kwargs), cls.from_config(cls(**kwargs).get_config())
    for _ in range(2):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a(shape)),
                                      keras.ops.convert_to_numpy(b(shape)))


def test_keras_spelling_of_the_untruncated_normal_is_stored_canonically():
    init = I.VarianceScaling(distribution="untruncated_normal")
    assert init.get_config()["distribution"] == "normal"


@pytest.mark.parametrize("cls", sorted(set(BUILTIN_ALIASES.values()), key=lambda c: c.__name__))
def test_an_unknown_config_argument_is_named_before_the_constructor(cls):
    config = {**cls().get_config(), "bogus": 3} if cls is not I.Pretrained else {"bogus": 3}
    with pytest.raises(ValueError, match=rf"{cls.__name__} config has unknown argument\(s\) "
                                         r"'bogus'; .* takes "):
        cls.from_config(config)


def hostile_copy(path, tmp_path, change):
    """A copy of a saved .keras file whose first kit_* initializer config is edited."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    layer = next(item for item in config["config"]["layers"]
                 if "kernel_initializer" in item["config"])
    change(layer["config"]["kernel_initializer"]["config"])
    files["config.json"] = json.dumps(config).encode()
    copy = tmp_path / "hostile.keras"
    with zipfile.ZipFile(copy, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return copy


@pytest.mark.parametrize("change, words", [
    (lambda c: c.update(bogus=3), r"HeNormal config has unknown argument\(s\) 'bogus'; "
                                  r"HeNormal takes seed, input_axes, output_axes"),
    (lambda c: c.update(seed="abc"), r"`seed` must be None or a non-negative integer; "
                                     r"received seed='abc'"),
])
def test_a_tampered_keras_file_fails_with_our_message(tmp_path, change, words):
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, kernel_initializer=I.HeNormal(seed=1))])
    path = tmp_path / "model.keras"
    model.save(path)
    with pytest.raises((TypeError, ValueError), match=words):
        keras.models.load_model(hostile_copy(path, tmp_path, change))
