"""The probe measures what it claims, on every kind of model, and leaves no trace."""
import random
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from nets import batch, mlp

import keras_initkit
from keras_initkit.diagnostics import Probe
from keras_initkit.diagnostics.findings import layout_of
from keras_initkit.diagnostics.probe import MAX_TRACES

L = keras.layers


def by_path(result):
    return {row.path: row.stats for row in result.activations}


def test_activation_stats_match_a_direct_computation():
    model = mlp("kit_he", depth=3, width=32)
    x = batch(64)
    x[0, 0] = 0.0
    result = by_path(Probe(model)(x))
    outputs = keras.Model(model.inputs, [layer.output for layer in model.layers])(x)
    for layer, out in zip(model.layers, outputs):
        out = np.asarray(out, dtype=np.float64)
        s = result[layer.path]
        np.testing.assert_allclose([s["mean"], s["std"], s["rms"], s["min"], s["max"]],
                                   [out.mean(), out.std(), np.sqrt((out**2).mean()), out.min(),
                                    out.max()], rtol=1e-4, atol=1e-6)
        assert s["zero_fraction"] == pytest.approx((out == 0).mean())
        assert s["dead_fraction"] == pytest.approx((out == 0).all(axis=0).mean())


def test_gradients_match_a_direct_computation_with_y():
    model = mlp("kit_he", depth=3, width=32)
    model.compile(loss="mse")
    x, y = batch(64), np.random.default_rng(1).normal(size=(64, 32)).astype("float32")
    result = Probe(model)(x, y)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    assert result.loss == pytest.approx(float(loss), rel=1e-5)
    for (path, _, s, _), g, w in zip(result.weights, grads, model.trainable_variables):
        assert path == w.path
        assert s["grad_norm"] == pytest.approx(float(tf.norm(g)), rel=1e-4)
        assert s["weight_norm"] == pytest.approx(float(tf.norm(w)), rel=1e-5)
        assert s["grad_to_weight"] == pytest.approx(float(tf.norm(g) / tf.norm(w)), rel=1e-4)
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        np.testing.assert_allclose(
            [s["weight_rms"], s["grad_rms"], s["grad_max"]],
            [np.sqrt((w**2).mean()), np.sqrt((g**2).mean()), np.abs(g).max()], rtol=1e-4)
        assert s["grad_nan_count"] == s["grad_inf_count"] == 0


@pytest.mark.parametrize("scale", [1e-21, 1e-17, 1.0, 1e15])
def test_weight_norms_far_from_one_are_exact_in_the_cheap_pass(scale):
    # Float32 squares of entries near 1e-21 flush to 0: the cheap pass takes a weight's
    # moments over its largest entry, so its norm matches float64 without the exact pass
    # (a second call, for NaN and Inf only).
    model = mlp("kit_he", depth=2, width=16)
    kernel = model.layers[0].kernel
    kernel.assign(scale * np.sign(kernel.numpy()) * (1 + np.abs(kernel.numpy())))
    probe = Probe(model)
    row = probe(batch(32)).weights[0]
    assert row.path == kernel.path
    w = kernel.numpy().astype(np.float64)
    assert row.stats["weight_norm"] == pytest.approx(np.sqrt((w * w).sum()), rel=1e-5)
    assert row.stats["weight_rms"] == pytest.approx(np.sqrt((w * w).mean()), rel=1e-5)
    assert [exact for _, _, exact, *_ in probe._concrete] == [False]


def test_loss_argument_for_an_uncompiled_model():
    model = mlp("kit_he", depth=2, width=8, inputs=8)
    x, y = batch(32, 8), np.random.default_rng(2).normal(size=(32, 8)).astype("float32")
    out = np.asarray(model(x, training=True), np.float64)
    assert Probe(model, loss="mae")(x, y).loss == pytest.approx(np.abs(out - y).mean(), rel=1e-5)
    assert keras_initkit.diagnose(model, x, y, loss="mse").loss == pytest.approx(
        ((out - y) ** 2).mean(), rel=1e-5)
    with pytest.raises(ValueError, match="loss"):  # targets, but no loss to compare them by
        Probe(model)(x, y)


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid", "softsign", "tanh"])
def test_saturated_fraction_of_each_bounded_activation(activation):
    # Large normal weights push many pre-activations past saturation (softsign only beyond
    # |z| > 32), and leave others inside: a mix, so that a wrong count shows.
    keras.utils.set_random_seed(0)
    stddev = 8.0 if activation == "softsign" else 1.0
    model = keras.Sequential([keras.Input((32,)), L.Dense(
        64, activation=activation, kernel_initializer=keras.initializers.RandomNormal(0, stddev))])
    x = batch(128, 32)
    s = Probe(model)(x).activations[0][2]
    out = np.asarray(model(x), np.float64)
    centred = out if activation in ("softsign", "tanh") else 2 * out - 1
    expected = (np.abs(centred) > 0.97).mean()
    assert 0.05 < expected < 0.95  # the control: neither none nor all saturated
    assert s["saturated_fraction"] == pytest.approx(expected, abs=1 / out.size)


def test_inf_and_nan_are_counted_where_they_appear():
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, name="linear"),
                              L.Dense(4, name="next")])
    x = batch(8, 8)
    x[2, 3] = np.inf  # row 2 of "linear": +-inf in every unit; of "next": inf - inf = NaN
    outs = keras.Model(model.inputs, [layer.output for layer in model.layers])(x)
    s = by_path(Probe(model)(x))
    for layer, out in zip(model.layers, outs):
        out = np.asarray(out)
        assert (s[layer.path]["inf_count"], s[layer.path]["nan_count"]) == (
            np.isinf(out).sum(), np.isnan(out).sum()), layer.name
    assert s[model.layers[0].path]["inf_count"] == 16


def test_the_probe_leaves_no_trace():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), L.Dense(32), L.BatchNormalization(),
                              L.Activation("relu"), L.Dropout(0.5), L.Dense(4)])
    before = [v.numpy().copy() for v in model.variables]  # weights, BN moments, dropout seed
    assert any("seed" in v.path for v in model.variables)
    keras_seeds = keras.src.random.seed_generator.global_seed_generator().state.numpy().copy()
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    probe = Probe(model)
    for _ in range(2):
        probe(batch(32, 16))  # the surrogate loss
    model.compile(loss="mse")
    probe(batch(32, 16), np.ones((32, 4), "float32"))  # the compiled loss of targets
    for old, new in zip(before, model.variables):
        np.testing.assert_array_equal(old, new.numpy(), err_msg=new.path)
    # No global random state moves either: Keras', Python's, NumPy's.
    np.testing.assert_array_equal(
        keras.src.random.seed_generator.global_seed_generator().state.numpy(), keras_seeds)
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert not any("call" in vars(layer) for layer in model.layers)  # calls unwrapped


def test_training_mode_batch_statistics():
    # In training mode BatchNormalization normalizes with the batch: std ~ 1 whatever the input.
    model = keras.Sequential([keras.Input((16,)), L.Dense(32), L.BatchNormalization(name="bn")])
    s = by_path(Probe(model)(batch(256, 16) * 50.0))
    bn = next(v for k, v in s.items() if k.endswith("bn"))
    assert bn["std"] == pytest.approx(1.0, abs=0.01)


def test_nested_multi_output_and_shared_layers():
    inner = keras.Sequential([L.Dense(8, activation="relu", name="inner_dense"),
                              L.Dense(8, name="inner_out")], name="inner")
    shared = L.Dense(8, name="shared")
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    left, right = shared(a), shared(b)
    out1 = inner(left)
    out2 = L.Dense(2, name="head2")(right)
    model = keras.Model([a, b], [out1, out2], name="outer")
    result = Probe(model)([batch(16, 8), batch(16, 8, seed=1)])
    paths = [row.path for row in result.activations]
    assert "shared" in paths[0] and "(call 2)" in paths[1]
    assert any(p.endswith("inner/inner_dense") for p in paths)
    assert any(p.endswith("head2") for p in paths)
    assert len(result.weights) == len(model.trainable_variables)
    assert all(s["grad_norm"] > 0 for _, _, s, _ in result.weights)


def test_layers_without_weights_get_the_path_of_the_model_that_holds_them():
    def block(name):  # two blocks whose weightless layers have the same names
        return keras.Sequential([L.Dense(8, name="dense"), L.Activation("relu", name="relu"),
                                 L.Dropout(0.1, name="drop")], name=name)

    model = keras.Sequential([keras.Input((8,)), block("block_1"), block("block_2"),
                              L.ReLU(name="top_relu")], name="net")
    paths = [row.path for row in Probe(model)(batch(16, 8)).activations]
    for name in ("block_1", "block_2"):
        assert [f"net/{name}/{layer}" for layer in ("dense", "relu", "drop")] == [
            p for p in paths if p.startswith(f"net/{name}/")]
    assert "net/top_relu" in paths and not any("(call" in p for p in paths)


def test_tensor_batches_take_the_flat_call_with_the_same_numbers():
    # Two inputs and two targets of one shape, given as dicts in an order other than their
    # names': a mix-up of the flat call's tensors would give other numbers, not an error.
    a, b = keras.Input((8,), name="b_in"), keras.Input((8,), name="a_in")
    model = keras.Model({"z": a, "y": b}, {"p": L.Dense(4, name="p")(a),
                                           "q": L.Dense(4, name="q")(L.Dense(8)(b) * 3.0)})
    model.compile(loss={"p": "mse", "q": "mae"})
    x = {"z": batch(16, 8), "y": batch(16, 8, seed=1)}
    y = {"p": batch(16, 4, seed=2), "q": batch(16, 4, seed=3) * 10}
    probe = Probe(model)
    reference = Probe(model)(x, y)
    on_device = tf.nest.map_structure(tf.convert_to_tensor, (x, y))
    for batch_ in [(x, y)] * 2 + [on_device] * 2:  # second calls reuse the first's flat list
        result = probe(*batch_)
        assert result.loss == reference.loss
        assert [r.stats for r in result.activations] == [r.stats for r in reference.activations]
        assert [s for _, _, s, _ in result.weights] == [s for _, _, s, _ in reference.weights]
    flat = {id(entry[0]): entry[2] is not None for entry in probe._flat.values()}
    assert flat == {id(x): True, id(on_device[0]): True}
    x["z"] *= 2.0  # an array changed in place is read again, not taken from the last call
    assert probe(x, y).loss != reference.loss


def test_a_subclassed_model_reports_its_inner_layers():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = L.Dense(16, activation="tanh")
            self.out = L.Dense(3)

        def call(self, x):
            return self.out(self.hidden(x))

    model = Net()
    model(batch(4, 8))
    result = Probe(model)(batch(32, 8))
    assert [type(row.layer).__name__ for row in result.activations] == ["Dense", "Dense"]
    assert len(result.weights) == 4


def test_raw_weights_of_a_subclassed_model_warn_once_and_keep_their_gradients():
    class Raw(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = L.Dense(16, activation="relu")
            self.w = self.add_weight(shape=(16, 3), initializer="kit_glorot_normal")

        def call(self, x):
            return keras.ops.matmul(self.hidden(x), self.w)

    model = Raw()
    model(batch(4, 8))
    with pytest.warns(UserWarning, match="outside any layer call") as caught:
        result = Probe(model)(batch(32, 8))
    assert sum("outside any layer call" in str(w.message) for w in caught) == 1
    assert model.w.path in str(caught[0].message)
    assert [type(row.layer).__name__ for row in result.activations] == ["Dense"]
    assert [row.path for row in result.weights] == [v.path for v in model.trainable_variables]
    assert all(s["grad_norm"] > 0 for _, _, s, _ in result.weights)
    with warnings.catch_warnings(record=True) as again:  # once: not per call, nor per probe
        warnings.simplefilter("always")
        Probe(model)(batch(32, 8))
        keras_initkit.diagnose(model, batch(32, 8))
    assert not [w for w in again if "outside any layer call" in str(w.message)]


def test_bad_models_are_refused():
    with pytest.raises(TypeError, match="keras.Model"):
        Probe(L.Dense(3))
    with pytest.raises(ValueError, match="not built"):
        Probe(keras.Sequential([L.Dense(3)]))
    model = mlp("kit_he", depth=2, width=8, inputs=8)
    with pytest.raises(ValueError, match="loss"):
        Probe(model)(batch(8, 8), np.zeros((8, 8), "float32"))


@pytest.mark.parametrize("structure", ["list", "dict"])
def test_a_multi_output_model_uses_its_compiled_losses(structure):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    a, b = L.Dense(2, name="a")(inputs), L.Dense(3, name="b")(inputs)
    x = batch(16, 8)
    ya, yb = np.ones((16, 2), "float32"), np.zeros((16, 3), "float32")
    if structure == "list":
        model = keras.Model(inputs, [a, b])
        model.compile(loss=["mse", "mae"], loss_weights=[1.0, 0.25])
        y = [ya, yb]
    else:
        model = keras.Model(inputs, {"a": a, "b": b})
        model.compile(loss={"a": "mse", "b": "mae"}, loss_weights={"a": 1.0, "b": 0.25})
        y = {"a": ya, "b": yb}
    result = Probe(model)(x, y)
    pa, pb = (model(x)[0], model(x)[1]) if structure == "list" else (model(x)["a"], model(x)["b"])
    expected = float(np.mean((np.asarray(pa) - ya) ** 2)
                     + 0.25 * np.mean(np.abs(np.asarray(pb) - yb)))
    assert result.loss == pytest.approx(expected, rel=1e-5)
    evaluated = model.evaluate(x, y, verbose=0)  # Keras' own weighted training loss
    total = evaluated[0] if isinstance(evaluated, list) else evaluated
    assert result.loss == pytest.approx(float(total), rel=1e-4)
    assert result.loss == pytest.approx(expected, rel=1e-5)


def test_recurrent_layers_are_probed_without_their_inner_cells():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,), dtype="int32"), L.Embedding(50, 8),
                              L.LSTM(8, return_sequences=True), L.GRU(4), L.Dense(1)])
    x = np.random.default_rng(0).integers(0, 50, (16, 10)).astype("int32")
    result = Probe(model)(x)
    kinds = [type(row.layer).__name__ for row in result.activations]
    assert kinds == ["Embedding", "LSTM", "GRU", "Dense"]
    assert all(s["grad_norm"] > 0 for _, _, s, _ in result.weights)


def test_std_of_a_large_mean_output_is_exact():
    from keras_initkit.diagnostics import stats

    y = (1000 + 0.01 * np.random.default_rng(0).normal(size=(64, 32))).astype("float32")
    row = dict(zip(stats.ACTIVATION_FIELDS, np.asarray(stats.activation_stats(y, x=y))))
    assert row["std"] == pytest.approx(y.astype("float64").std(), rel=1e-3)
    assert row["input_std"] == pytest.approx(row["std"])


def test_the_loss_follows_a_new_compile_and_includes_regularization():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, kernel_regularizer="l2")])
    x, y = batch(16, 8), np.ones((16, 4), "float32")
    probe = Probe(model)
    model.compile(loss="mse")
    penalty = 0.01 * float(np.sum(model.layers[0].kernel.numpy() ** 2))
    out = np.asarray(model(x))
    assert probe(x, y).loss == pytest.approx(np.mean((out - y) ** 2) + penalty, rel=1e-5)
    model.compile(loss="mae")
    assert probe(x, y).loss == pytest.approx(np.mean(np.abs(out - y)) + penalty, rel=1e-5)


@pytest.mark.parametrize("stddev, depth", [(0.01, 24), (1.0, 20)])
def test_moments_of_tiny_and_huge_signals_are_not_flushed_or_overflowed(stddev, depth):
    # Float32 squares of 1e-20 flush to 0 and of 1e20 overflow: the moments are taken of the
    # tensor over its largest entry, so a vanishing stack reads 1e-23, not 0, and an
    # exploding one 1e21, not inf. Compared with a float64 forward pass.
    keras.utils.set_random_seed(0)
    init = keras.initializers.RandomNormal(stddev=stddev)
    model = keras.Sequential([keras.Input((256,))] + [
        keras.layers.Dense(256, activation="relu", kernel_initializer=init) for _ in range(depth)])
    x = np.random.default_rng(0).normal(size=(64, 256)).astype("float32")
    result = Probe(model)(x)
    a = x.astype("float64")
    for (_, _, s, *_), layer in zip(result.activations, model.layers):
        a = np.maximum(a @ layer.kernel.numpy().astype("float64"), 0)
        np.testing.assert_allclose([s["std"], s["rms"]], [a.std(), np.sqrt((a * a).mean())],
                                   rtol=1e-3)
    assert abs(np.log10(a.std())) > 20  # the squares really leave float32's range
    grads = [s["grad_norm"] for _, _, s, _ in result.weights]
    assert all(np.isfinite(grads)) and min(grads) > 0


def test_one_probe_follows_new_weights_and_a_frozen_layer():
    # The compiled probe reads the variables it captured: it must see assignments made since,
    # and a layer frozen since must drop out of the gradients (a new trace).
    model = mlp("kit_he", depth=2, width=16)
    probe, x = Probe(model), batch(32)
    first = probe(x)
    kernel = model.layers[0].kernel
    kernel.assign(2.0 * kernel)
    doubled = probe(x).weights[0][2]["weight_norm"]
    assert doubled == pytest.approx(2.0 * first.weights[0][2]["weight_norm"], rel=1e-5)
    model.layers[0].trainable = False
    frozen = probe(x)
    assert [row.path for row in frozen.weights] == [v.path for v in
                                                       model.trainable_variables]
    assert len(frozen.weights) == len(first.weights) - 2
    assert_weights_are_their_own(frozen, model)
    model.layers[0].trainable = True  # and back: the first trace's variables again
    assert_weights_are_their_own(probe(x), model)


def assert_weights_are_their_own(result, model):
    """Each weight row holds the numbers of the variable it names."""
    assert [row.path for row in result.weights] == [v.path for v in model.trainable_variables]
    for (_, _, s, _), v in zip(result.weights, model.trainable_variables):
        assert s["weight_norm"] == pytest.approx(float(np.linalg.norm(v.numpy())), rel=1e-5)


def test_gradual_unfreezing_keeps_a_bounded_number_of_traces():
    # Each new set of trainable variables needs a trace; only the latest MAX_TRACES stay.
    model = mlp("kit_he", depth=12, width=8, inputs=8)
    probe, x = Probe(model), batch(16, 8)
    for layer in model.layers:
        layer.trainable = False
    for unfrozen, layer in enumerate(reversed(model.layers), start=1):
        layer.trainable = True
        result = probe(x)
        assert len(result.weights) == 2 * unfrozen  # the gradients of what is trainable now
        assert_weights_are_their_own(result, model)
        assert len(probe._concrete) == min(unfrozen, MAX_TRACES)
    model.layers[-1].trainable = False  # a set seen before, evicted since: traced again
    assert_weights_are_their_own(probe(x), model)
    assert len(probe._concrete) == MAX_TRACES


def test_a_deep_stack_of_like_layers_matches_a_direct_computation():
    # Ten like layers are reduced as one stacked group (stats.GROUP_MIN_COUNT): each row must
    # still be its own layer's, in order, around a layer of another width in the middle.
    keras.utils.set_random_seed(3)
    widths = [16] * 5 + [24] + [16] * 5
    model = keras.Sequential([keras.Input((16,))] + [
        L.Dense(w, activation="relu", kernel_initializer=keras.initializers.RandomNormal(
            stddev=0.1 + 0.05 * i)) for i, w in enumerate(widths)])
    x = batch(64, 16)
    result = Probe(model)(x)
    outputs = keras.Model(model.inputs, [layer.output for layer in model.layers])(x)
    for (path, _, s, *_), layer, out in zip(result.activations, model.layers, outputs):
        out = np.asarray(out, dtype=np.float64)
        assert path == layer.path
        np.testing.assert_allclose([s["mean"], s["std"], s["max"], s["zero_fraction"]],
                                   [out.mean(), out.std(), out.max(), (out == 0).mean()],
                                   rtol=1e-4, atol=1e-7)
        assert s["dead_fraction"] == pytest.approx((out == 0).all(axis=0).mean())
    for (path, _, s, _), w in zip(result.weights, model.trainable_variables):
        assert path == w.path
        assert s["weight_norm"] == pytest.approx(float(np.linalg.norm(w.numpy())), rel=1e-5)


def test_a_diagnosed_model_is_freed_with_its_cached_probe():
    # diagnose() keeps its probe (and traces) for the next call; they must go with the model,
    # or a zoo of models diagnosed in one process keeps every one of them (it grew past 18 GB).
    import gc
    import weakref

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    keras_initkit.diagnose(model, np.ones((4, 8), "float32"))
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_results_of_one_trace_share_one_layout():
    # The rules' view of the layers is built once per trace, not once per probe.
    model = keras.Sequential([keras.Input((8,)), L.Dense(8, activation="relu"), L.Dense(4)])
    probe, x = Probe(model), batch(16, 8)
    first, second = probe(x), probe(x)
    assert first.shared is second.shared and layout_of(first) is layout_of(second)
    model.layers[0].trainable = False  # a new trace, with one kernel fewer
    third = probe(x)
    assert third.shared is not first.shared
    assert [third.weights[j].path for j in layout_of(third).kernels] == [
        first.weights[j].path for j in layout_of(first).kernels][1:]
