"""A model using every alias, in every layer that takes initializers, survives save and reload."""
import json
import os
import subprocess
import sys

import every_alias_model as zoo
import keras
import numpy as np
import pytest

from keras_initkit.initializers import KitInitializer
from keras_initkit.registry import BUILTIN_ALIASES

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    npz = folder / "pretrained.npz"
    np.savez(npz, w=np.random.default_rng(0).normal(size=(16, 16)).astype("float32"))
    model, used = zoo.build(npz)
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")  # the legacy format
    return folder, model, used


def test_the_model_uses_every_alias_and_layer_kind(saved):
    _, model, used = saved
    assert set(used) == set(BUILTIN_ALIASES)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Dense", "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D",
            "SeparableConv2D", "Embedding", "LSTM", "GRU", "EinsumDense"} <= kinds


@pytest.mark.slow
@pytest.mark.parametrize("filename", ["model.keras", "model.h5"])
def test_reload_in_a_new_process(saved, filename, subprocess_env):
    folder, model, _ = saved
    out = str(folder / filename.replace(".", "_"))
    subprocess.run([sys.executable, os.path.join(HERE, "every_alias_model.py"),
                    str(folder / filename), out], check=True, capture_output=True,
                   env=subprocess_env, cwd=HERE)
    with open(out + ".json") as f:
        reloaded = json.load(f)
    assert reloaded == json.loads(json.dumps(zoo.initializers_of(model)))
    assert len(reloaded) >= 30
    with np.load(out + "_weights.npz") as weights:
        assert len(weights.files) == len(model.weights)
        for i, w in enumerate(model.weights):
            np.testing.assert_array_equal(weights[f"arr_{i}"], keras.ops.convert_to_numpy(w))
    with np.load(out + "_outputs.npz") as outputs:
        np.testing.assert_allclose(outputs["arr_0"], model(zoo.sample_inputs()), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.slow
def test_export_to_savedmodel_serves_the_same_outputs(saved):
    import tensorflow as tf

    folder, model, _ = saved
    model.export(str(folder / "exported"), verbose=False)
    loaded = tf.saved_model.load(str(folder / "exported"))  # keep it alive while serving
    served = loaded.serve(zoo.sample_inputs())
    np.testing.assert_allclose(served.numpy(), model(zoo.sample_inputs()), rtol=1e-5, atol=1e-6)


def test_clone_model_redraws_every_random_weight(saved):
    _, model, _ = saved
    clone = keras.models.clone_model(model)
    made_by = zoo.weight_initializers(model)
    assert len(made_by) == len(model.weights)
    for original, copy in zip(model.weights, clone.weights):
        init = made_by[original.path]
        a, b = keras.ops.convert_to_numpy(original), keras.ops.convert_to_numpy(copy)
        if isinstance(init, KitInitializer) and init.random:
            assert not np.array_equal(a, b), original.path
        else:  # constants, identity, pretrained values, Keras' default zero biases
            np.testing.assert_array_equal(a, b)
