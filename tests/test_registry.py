import keras
import numpy as np
import pytest

import keras_initkit
from keras_initkit import initializers as I
from keras_initkit.registry import BUILTIN_ALIASES

ALIASES_FROM_THE_ISSUE = """kit_zeros kit_ones kit_constant kit_random_normal kit_random_uniform
kit_truncated_normal kit_glorot_uniform kit_glorot kit_xavier_uniform kit_glorot_normal kit_xavier
kit_xavier_normal kit_he_normal kit_he kit_kaiming_normal kit_he_uniform kit_kaiming_uniform
kit_lecun_normal kit_lecun_uniform kit_variance_scaling kit_orthogonal kit_identity
kit_delta_orthogonal kit_convolution_aware kit_icnr kit_sparse kit_pretrained
kit_zero_init""".split()


def test_every_alias_is_registered():
    assert set(BUILTIN_ALIASES) == set(ALIASES_FROM_THE_ISSUE)
    listed = {info.alias: info for info in keras_initkit.list_initializers()}
    for alias, cls in BUILTIN_ALIASES.items():
        assert listed[alias].cls is cls and listed[alias].formula
        assert keras.saving.get_custom_objects()[alias] is cls


@pytest.mark.parametrize("alias", [a for a in ALIASES_FROM_THE_ISSUE if a != "kit_pretrained"])
def test_alias_resolves_through_keras_our_get_and_a_layer(alias):
    cls = BUILTIN_ALIASES[alias]
    assert type(keras.initializers.get(alias)) is cls
    assert type(keras_initkit.get(alias)) is cls
    layer = keras.layers.Dense(4, kernel_initializer=alias)
    assert type(layer.kernel_initializer) is cls


def test_aliases_of_one_scheme_agree():
    assert BUILTIN_ALIASES["kit_he"] is BUILTIN_ALIASES["kit_kaiming_normal"] is I.HeNormal
    assert BUILTIN_ALIASES["kit_xavier"] is I.GlorotNormal
    assert BUILTIN_ALIASES["kit_glorot"] is BUILTIN_ALIASES["kit_xavier_uniform"] is I.GlorotUniform


def test_alias_with_a_config():
    init = keras.initializers.get({"class_name": "kit_constant", "config": {"value": 0.5}})
    assert isinstance(init, I.Constant) and init.value == 0.5


def test_get_suggests_the_closest_alias():
    with pytest.raises(ValueError, match="Did you mean 'kit_he'"):
        keras_initkit.get("kit_hee")
    with pytest.raises(ValueError, match="Did you mean 'kit_he'"):
        keras_initkit.get("he")  # the name `initkit compare` takes
    with pytest.raises(TypeError, match="3.5"):
        keras_initkit.get(3.5)


def test_get_passes_keras_names_and_instances_through():
    assert isinstance(keras_initkit.get("he_normal"), keras.initializers.HeNormal)
    init = I.Orthogonal()
    assert keras_initkit.get(init) is init and keras_initkit.get(None) is None


def test_register_a_function(tmp_path):
    @keras_initkit.register_initializer("kit_test_half")
    def half(shape, dtype=None):
        """Every entry 0.5."""
        return keras.ops.full(shape, 0.5, dtype=dtype)

    layer = keras.layers.Dense(3, kernel_initializer="kit_test_half")
    model = keras.Sequential([keras.Input((2,)), layer])
    np.testing.assert_array_equal(layer.kernel.numpy(), np.full((2, 3), 0.5))
    info = {i.alias: i for i in keras_initkit.list_initializers()}["kit_test_half"]
    assert info.formula == "Every entry 0.5."
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(reloaded.layers[0].kernel_initializer) is type(layer.kernel_initializer)


def test_register_a_subclass():
    @keras_initkit.register_initializer("kit_test_scaled_eye")
    class ScaledEye(keras.initializers.Initializer):
        """Identity times a factor."""

        def __init__(self, factor=2.0):
            self.factor = factor

        def __call__(self, shape, dtype=None):
            return keras.ops.eye(*shape, dtype=dtype) * self.factor

        def get_config(self):
            return {"factor": self.factor}

    init = keras_initkit.get("kit_test_scaled_eye")
    assert isinstance(init, ScaledEye)
    info = {i.alias: i for i in keras_initkit.list_initializers()}["kit_test_scaled_eye"]
    assert info.formula == "Identity times a factor."
    restored = keras.initializers.deserialize(keras.initializers.serialize(ScaledEye(3.0)))
    assert isinstance(restored, ScaledEye) and restored.factor == 3.0


@pytest.mark.parametrize("alias,obj,error,word", [
    ("kit_he", lambda s, dtype=None: None, ValueError, "built-in"),
    ("he_normal", lambda s, dtype=None: None, ValueError, "Keras"),
    ("", lambda s, dtype=None: None, TypeError, "alias"),
    ("kit_test_bad", dict, TypeError, "dict"),
    ("kit_test_bad", I.HeNormal(), TypeError, "register its class"),
])
def test_register_refuses(alias, obj, error, word):
    with pytest.raises(error, match=word):
        keras_initkit.register_initializer(alias)(obj)
