"""lsuv(): every scaled layer ends within tolerance, it costs one forward pass, bad input is
named."""
import keras
import numpy as np
import pytest

import keras_initkit
from keras_initkit.callbacks import LSUVInit

L = keras.layers


def linear_output_variances(model, x):
    """Each Dense/Conv layer's output before its activation, computed independently."""
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, (L.Dense, L.Conv2D))]
    inputs = keras.Model(model.inputs[0], [layer.input for layer in layers])(x)
    out = []
    for layer, inp in zip(layers, inputs):
        activation, layer.activation = layer.activation, keras.activations.linear
        out.append(float(np.var(keras.ops.convert_to_numpy(layer(inp)))))
        layer.activation = activation
    return np.array(out)


def deep_mlp(init, depth=20, activation="relu"):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,))] + [
        L.Dense(64, activation=activation, kernel_initializer=init) for _ in range(depth)]
        + [L.Dense(10)])


def small_cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(16, 3, activation="relu", padding="same"),
        L.Conv2D(16, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"),
        L.MaxPooling2D(), L.Conv2D(32, 3, activation="tanh"), L.GlobalAveragePooling2D(),
        L.Dense(10)])


def data(shape, n=256, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


@pytest.mark.parametrize("build, shape", [(deep_mlp, (64,)), (small_cnn, (16, 16, 3))])
def test_every_layer_ends_within_tolerance(build, shape):
    model = build("kit_random_normal") if build is deep_mlp else build()
    x = data(shape)
    report = keras_initkit.lsuv(model, x, seed=0)
    assert all(r["converged"] for r in report)
    variances = linear_output_variances(model, x)
    assert len(variances) == len(report)
    assert np.all(np.abs(variances - 1.0) < 0.1), variances
    np.testing.assert_allclose(variances, [r["variance"] for r in report], rtol=1e-4)
    # One forward pass: every leaf layer once, plus the retries of the scaled layers.
    leaves = len(model.layers)
    assert report.layer_evaluations == leaves + sum(r["iterations"] for r in report)
    assert report.forward_passes == 1


def test_attention_kernels_start_orthonormal_as_the_maps_they_compute():
    # (d, heads, head_dim) projections map d inputs to heads * head_dim outputs.
    tokens = keras.Input((8, 32))
    model = keras.Model(tokens, L.MultiHeadAttention(4, 8, name="attention")(tokens, tokens))
    keras_initkit.lsuv(model, data((8, 32)), seed=0)
    # The query kernel (32, 4, 8): flattened as (128, 8) it was orthonormal, as the map it
    # computes, (32, 32), it was not.
    kernel = keras.ops.convert_to_numpy(model.get_layer("attention").query_dense.kernel)
    singular = np.linalg.svd(kernel.reshape(32, -1), compute_uv=False)
    assert singular.min() / singular.max() > 1 - 1e-4, singular


def test_a_tolerance_and_target_are_honoured_and_iterations_capped():
    model = deep_mlp("kit_random_normal", depth=6, activation="tanh")
    x = data((64,))
    keras_initkit.lsuv(model, x, target_var=2.0, tol=0.01, seed=0)
    assert np.all(np.abs(linear_output_variances(model, x) - 2.0) < 0.01)
    capped = keras_initkit.lsuv(deep_mlp("kit_random_normal", depth=6), x, max_iter=1,
                                orthonormal=False)
    assert max(r["iterations"] for r in capped) == 1
    # The variance scales exactly with the kernel squared: one step lands on the target.
    assert all(abs(r["variance"] - 1.0) < 0.1 for r in capped)


def test_lsuv_makes_a_dead_deep_mlp_train_and_diagnose_agrees():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")

    def trained(use_lsuv):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,))] + [
            L.Dense(64, activation="relu",
                    kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
            for _ in range(20)] + [L.Dense(10)])
        before = keras_initkit.diagnose(model, x[:256])
        if use_lsuv:
            keras_initkit.lsuv(model, x[:256], seed=0)
        after = keras_initkit.diagnose(model, x[:256])
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, batch_size=64, epochs=6, verbose=0, shuffle=False)
        return before, after, history.history["loss"]

    before, after, loss = trained(True)
    assert "vanishing" in {f.kind for f in before.findings} and after.healthy
    assert loss[-1] < 0.5 * loss[0]
    _, still, flat = trained(False)
    assert not still.healthy and flat[-1] > 0.95 * flat[0]


def test_nested_functional_model_and_the_callback():
    inner = keras.Sequential([keras.Input((32,)), L.Dense(32, activation="relu"),
                              L.Dense(32, activation="relu")], name="inner")
    inputs = keras.Input((32,))
    model = keras.Model(inputs, L.Dense(4)(inner(inputs)))
    x = data((32,))
    callback = LSUVInit(x, seed=0)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((len(x), 4), "float32"), epochs=1, verbose=0, callbacks=[callback])
    assert [r["layer"] for r in callback.report][:2] == ["inner/dense", "inner/dense_1"] or \
        len(callback.report) == 3
    assert len(callback.report) == 3 and all(r["converged"] for r in callback.report)
    assert model.layers[1].layers[0].call.__func__ is L.Dense.call  # no wrapper left behind


def test_the_callback_takes_a_dataset_and_leaves_a_trained_model_alone():
    import tensorflow as tf

    model, x = deep_mlp("kit_he", depth=3), data((64,))
    y = np.zeros((len(x), 10), "float32")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=1, verbose=0)  # trained: LSUV would wipe what it learned
    trained = [w.copy() for w in model.get_weights()]
    callback = LSUVInit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), seed=0)
    assert callback.x.shape == (64, 64)  # the dataset's first batch
    steps = int(model.optimizer.iterations.numpy())  # 256 samples, batches of 32
    with pytest.warns(UserWarning, match=f"trained {steps} steps already, so LSUV did not run"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.report is False
    # Adam's steps move each weight by about 1e-3 each; a re-drawn kernel would move by ~0.1.
    drift = max(np.abs(a - b).max() for a, b in zip(trained, model.get_weights()))
    assert drift <= 2e-3 * steps, drift


def test_zero_variance_names_the_layer():
    model = keras.Sequential([keras.Input((8,)), L.Dense(8, name="fine"),
                              L.Dense(8, kernel_initializer="zeros", name="flat")])
    with pytest.raises(ValueError, match="'.*flat'.*variance 0"):
        keras_initkit.lsuv(model, data((8,)), orthonormal=False)
    assert "call" not in vars(model.layers[0])  # wrappers removed after the error


def test_no_batch_is_named_in_the_function_and_the_callback():
    with pytest.raises(TypeError, match="`x`.*received x=None"):
        keras_initkit.lsuv(deep_mlp("kit_he", depth=2), None)
    with pytest.raises(TypeError, match="`x`.*received x=None"):
        LSUVInit(None)


@pytest.mark.parametrize("kwargs, words", [
    (dict(target_var=0), "target_var=0"), (dict(tol=-1), "tol=-1"),
    (dict(tol=2.0), "smaller than `target_var`"), (dict(max_iter=0), "max_iter=0"),
    (dict(max_iter=2.5), "max_iter=2.5"), (dict(orthonormal=False, seed=-5), "seed=-5"),
])
def test_bad_settings_are_named_in_the_function_and_the_callback(kwargs, words):
    model = deep_mlp("kit_he", depth=2)
    with pytest.raises(ValueError, match=words):
        keras_initkit.lsuv(model, data((64,)), **kwargs)
    with pytest.raises(ValueError, match=words):
        LSUVInit(data((64,)), **kwargs)
