"""Mimetic attention initialization (Trockman & Kolter 2023) and the weight-normalization init
(Salimans & Kingma 2016)."""
import math

import keras
import keras_hub
import numpy as np
import pytest

import keras_initkit

L = keras.layers


def attention_model(d=64, heads=4):
    tokens = keras.Input((10, d))
    y = L.MultiHeadAttention(num_heads=heads, key_dim=d // heads, name="mha")(tokens, tokens)
    return keras.Model(tokens, L.Add()([tokens, y]))


def test_mimetic_sets_the_papers_products():
    model = attention_model()
    rows = keras_initkit.mimetic(model, seed=0)
    assert len(rows) == 1 and rows[0]["heads"] == 4
    mha = model.get_layer("mha")
    q, k = mha.query_dense.kernel.numpy(), mha.key_dense.kernel.numpy()
    v, o = mha.value_dense.kernel.numpy(), mha.output_dense.kernel.numpy()
    d = 64
    # W_v W_o over the heads is alpha2 Z - beta2 I exactly (heads * head_dim = d): its diagonal
    # averages -beta2 and its off-diagonal entries have the RMS of alpha2 Z, alpha2 / sqrt(d).
    product = v.reshape(d, d) @ o.reshape(d, d)
    off = product[~np.eye(d, dtype=bool)]
    assert abs(np.diag(product).mean() + 0.4) < 6 * 0.4 / math.sqrt(d) / math.sqrt(d)
    assert abs(math.sqrt(np.mean(off**2)) - 0.4 / math.sqrt(d)) < 0.1 * 0.4 / math.sqrt(d)
    for h in range(4):  # each head: the best rank-16 part of 0.7 Z + 0.7 I, identity-dominated
        qk = q[:, h] @ k[:, h].T
        assert np.linalg.matrix_rank(qk, tol=1e-5) == 16
        assert np.diag(qk).mean() > 3 * np.abs(qk[~np.eye(d, dtype=bool)]).mean()
    keras_initkit.mimetic(model, seed=0)
    np.testing.assert_array_equal(q, mha.query_dense.kernel.numpy())  # deterministic


def test_mimetic_on_keras_hub_and_what_it_cannot_set():
    vit = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                       num_heads=4, hidden_dim=64, mlp_dim=128)
    assert len(keras_initkit.mimetic(vit, seed=1)) == 2
    llama = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=1, num_query_heads=4,
                                           num_key_value_heads=2, hidden_dim=32,
                                           intermediate_dim=64)
    with pytest.warns(UserWarning, match="left as it is"), \
            pytest.raises(ValueError, match="no attention"):
        keras_initkit.mimetic(llama)  # grouped keys: (32, 2, 8) against queries (32, 4, 8)


def test_weight_norm_init_starts_every_channel_at_zero_mean_unit_variance():
    image = keras.Input((8, 8, 2))
    h = L.Conv2D(16, 3, name="conv")(image)
    h = L.ReLU()(h)
    h = L.Flatten()(h)
    h = L.Dense(32, name="dense")(h)
    h = L.Activation("tanh")(h)
    h = L.Dense(24, use_bias=False, name="no_bias")(h)
    model = keras.Model(image, L.Dense(10, activation="softmax", name="head")(h))
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(256, 8, 8, 2)).astype("float32")
    report = keras_initkit.weight_norm_init(model, x, seed=0)
    assert [r["layer"] for r in report] == ["conv", "dense", "no_bias", "head"]
    names = ["conv", "dense", "no_bias"]
    outputs = keras.Model(image, [model.get_layer(n).output for n in names])(x)
    for name, out in zip(names, outputs):
        out = np.asarray(out, dtype=np.float64).reshape(-1, out.shape[-1])
        np.testing.assert_allclose(out.std(axis=0), 1.0, rtol=1e-3, err_msg=name)
        if name != "no_bias":
            np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4, err_msg=name)
    assert np.abs(np.asarray(outputs[2]).mean(axis=0)).max() > 1e-3  # no bias: mean not moved
    with pytest.raises(ValueError, match="init_std"):
        keras_initkit.weight_norm_init(model, x, init_std=0)
    with pytest.raises(ValueError, match="seed=-1"):
        keras_initkit.weight_norm_init(model, x, seed=-1)
    with pytest.raises(ValueError, match="seed=-1"):
        keras_initkit.mimetic(model, seed=-1)
    with pytest.raises(TypeError, match="x=None"):
        keras_initkit.weight_norm_init(model, None)
    with pytest.raises(ValueError, match="'conv'"):
        keras_initkit.weight_norm_init(model, np.ones((4, 8, 8, 2), "float32"))
