"""A model that uses every kit_* alias in every kind of layer that takes initializers.

Imported by the save/reload tests, and run as a script in a fresh process to
reload a saved model and dump what it finds.
"""
import json
import sys

import keras
import numpy as np

import keras_initkit
from keras_initkit.initializers import Constant, VarianceScaling

L = keras.layers


def build(npz_path):
    """Returns (model, aliases used). `npz_path` holds the pretrained array "w", (16, 16)."""
    alias = keras.initializers.get
    used = []

    def a(name, **config):
        used.append(name)
        return alias({"class_name": name, "config": config}) if config else name

    tokens = keras.Input((8,), dtype="int32", name="tokens")
    x = L.Embedding(50, 16, embeddings_initializer=a("kit_random_uniform"))(tokens)
    x = L.LSTM(8, return_sequences=True, kernel_initializer=a("kit_glorot"),
               recurrent_initializer=a("kit_orthogonal"), bias_initializer=a("kit_zeros"))(x)
    x = L.GRU(8, return_sequences=True, kernel_initializer=a("kit_xavier_uniform"),
              recurrent_initializer=a("kit_identity"))(x)
    x = L.EinsumDense("abc,cd->abd", output_shape=(None, 8), bias_axes="d",
                      kernel_initializer=a("kit_lecun_uniform"), bias_initializer=a("kit_ones"))(x)
    x = L.Conv1D(8, 3, padding="same", kernel_initializer=a("kit_delta_orthogonal"),
                 bias_initializer=a("kit_constant", value=0.1))(x)
    seq = L.GlobalAveragePooling1D()(x)

    image = keras.Input((8, 8, 3), name="image")
    y = L.Conv2D(12, 3, padding="same", kernel_initializer=a("kit_icnr", scale=2))(image)
    y = L.Conv2DTranspose(6, 3, padding="same", kernel_initializer=a("kit_convolution_aware"))(y)
    y = L.DepthwiseConv2D(3, padding="same", depthwise_initializer=a("kit_he_uniform"))(y)
    y = L.Conv2D(6, 3, padding="same", groups=3,
                 kernel_initializer=a("kit_delta_orthogonal", groups=3))(y)
    y = L.SeparableConv2D(8, 3, padding="same", depthwise_initializer=a("kit_kaiming_uniform"),
                          pointwise_initializer=a("kit_sparse", sparsity=0.5, stddev=0.1))(y)
    img = L.GlobalAveragePooling2D()(y)

    volume = keras.Input((4, 4, 4, 2), name="volume")
    z = L.Conv3D(4, 3, padding="same", kernel_initializer=a("kit_truncated_normal"),
                 bias_initializer=Constant(0.2))(volume)
    vol = L.GlobalAveragePooling3D()(z)

    h = L.Concatenate()([seq, img, vol])
    h = L.Dense(40, kernel_initializer=a("kit_zero_init"))(h)
    for name in ["kit_he", "kit_he_normal", "kit_kaiming_normal", "kit_glorot_uniform",
                 "kit_glorot_normal", "kit_xavier", "kit_xavier_normal", "kit_lecun_normal",
                 "kit_random_normal", "kit_variance_scaling"]:
        h = L.Dense(16, activation="relu", kernel_initializer=a(name))(h)
    h = L.Dense(16, kernel_initializer=a("kit_pretrained", path=str(npz_path), key="w"))(h)
    out = L.Dense(3, kernel_initializer=VarianceScaling(
        scale=0.5, mode="fan_avg", distribution="uniform", activation="leaky_relu",
        activation_params={"negative_slope": 0.2}))(h)
    return keras.Model([tokens, image, volume], out), used


def sample_inputs(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 50, (batch, 8)).astype("int32"),
            rng.normal(size=(batch, 8, 8, 3)).astype("float32"),
            rng.normal(size=(batch, 4, 4, 4, 2)).astype("float32")]


def _initializer_attributes(model):
    """(layer, owner, attribute, initializer) for every initializer a model's layers hold."""
    for layer in model.layers:
        for owner in [layer] + ([layer.cell] if hasattr(layer, "cell") else []):
            for attr, init in vars(owner).items():
                if isinstance(init, keras.initializers.Initializer):
                    yield layer, owner, attr, init


def initializers_of(model):
    """{"layer/attribute": [class name, config]} for every initializer the model holds."""
    return {f"{layer.name}/{attr}": [type(init).__name__, init.get_config()]
            for layer, _, attr, init in _initializer_attributes(model)}


def weight_initializers(model):
    """{weight path: the initializer that made it}, for every weight of the model."""
    made_by = {}
    for _, owner, attr, init in _initializer_attributes(model):
        weights = [getattr(owner, name, None) for name in _WEIGHT_OF.get(attr, ())]
        weights = [w for w in weights if w is not None]
        if weights:
            made_by[weights[0].path] = init
    return made_by


_WEIGHT_OF = {  # initializer attribute -> the weight it makes (DepthwiseConv2D calls it kernel)
    "kernel_initializer": ["kernel"], "bias_initializer": ["bias"],
    "recurrent_initializer": ["recurrent_kernel"], "embeddings_initializer": ["embeddings"],
    "depthwise_initializer": ["depthwise_kernel", "kernel"],
    "pointwise_initializer": ["pointwise_kernel"]}


def seeded_draws():
    """Three successive draws of seeded kit initializers: reproducible across processes."""
    he = keras_initkit.initializers.HeNormal(seed=7)
    orth = keras_initkit.initializers.Orthogonal(seed=7)
    return {f"he{i}": keras.ops.convert_to_numpy(he((6, 5))) for i in range(3)} | {
        f"orth{i}": keras.ops.convert_to_numpy(orth((6, 5))) for i in range(2)}


if __name__ == "__main__":  # python every_alias_model.py MODEL_PATH OUT_PREFIX
    model_path, out = sys.argv[1], sys.argv[2]
    model = keras.saving.load_model(model_path)
    with open(out + ".json", "w") as f:
        json.dump(initializers_of(model), f)
    np.savez(out + "_weights.npz", *[keras.ops.convert_to_numpy(w) for w in model.weights])
    np.savez(out + "_outputs.npz", keras.ops.convert_to_numpy(model(sample_inputs())))
    np.savez(out + "_seeded.npz", **seeded_draws())
