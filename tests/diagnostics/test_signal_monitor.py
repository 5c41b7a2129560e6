"""SignalMonitor: TensorBoard logs equal its history, findings act as asked, training is the
same."""

import keras
import numpy as np
import pytest
from nets import batch, mlp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_initkit.callbacks import FindingError, SignalMonitor

L = keras.layers


def data(n=256, features=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def classifier(init="kit_he", seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((16,)), L.Dense(32, kernel_initializer=init),
                              L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.3),
                              L.Dense(2)], name="clf")
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])  # Adam's state built by the monitor
def test_training_with_the_monitor_gives_the_same_weights(tmp_path, optimizer):
    x, y = data()
    plain, monitored = classifier(), classifier()
    for model in (plain, monitored):
        model.compile(optimizer, model.loss)
    plain.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    monitor = SignalMonitor(tmp_path, probe_data=(x[:64], y[:64]), every_n_steps=3,
                            histograms=True)
    monitored.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[monitor])
    for a, b in zip(plain.variables + plain.optimizer.variables,
                    monitored.variables + monitored.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert monitor.history["step"] == [0, 3, 6, 9, 12, 15, 16]  # and the last step, at the end


def test_tensorboard_holds_the_history_values(tmp_path):
    x, y = data()
    model = classifier()
    monitor = SignalMonitor(tmp_path, probe_data=x[:64], every_n_steps=4, histograms=True)
    for _ in range(2):  # a second fit() goes on with the same writer and step count
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    tags = set(events.Tags()["tensors"])
    assert monitor.history["step"] == [0, 4, 8, 12, 16]
    # Every scalar of every layer and weight, at every step, is the history's value.
    compared = 0
    for group, fields in (("activation", ("mean", "std", "grad_rms", "dead_fraction",
                                          "saturated_fraction", "nan_count")),
                          ("weight", ("weight_norm", "grad_norm", "grad_to_weight"))):
        for name, series in monitor.history[group + "s"].items():
            # One entry per probe, no more.
            assert all(len(v) == len(monitor.history["step"]) for v in series.values())
            for field in fields:
                logged = events.Tensors(f"{group}/{name}/{field}")
                assert [e.step for e in logged] == monitor.history["step"]
                values = [float(np.asarray(__import__("tensorflow").make_ndarray(e.tensor_proto)))
                          for e in logged]
                np.testing.assert_allclose(values, series[field], rtol=1e-6, err_msg=name)
                compared += 1
    assert compared == 6 * len(monitor.history["activations"]) + 3 * len(
        monitor.history["weights"])
    path = next(iter(monitor.history["activations"]))
    weight = model.trainable_variables[0].path
    assert f"gradient/{weight}" in tags and f"activation/{path}" in tags
    # Every scalar tag is the scalars plugin's; its metadata is written in its first event only.
    scalars = set(events.PluginTagToContent("scalars"))
    assert f"activation/{path}/std" in scalars and f"weight/{weight}/grad_norm" in scalars
    described = {}
    for file in sorted(tmp_path.glob("events.out.tfevents.*")):
        for event in __import__("tensorflow").compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                if value.tag in scalars:
                    described.setdefault(value.tag, []).append(value.HasField("metadata"))
    assert set(described) == scalars
    assert all(flags[0] and not any(flags[1:]) for flags in described.values())


def test_a_transformer_logs_token_cosine_and_attention_entropy(tmp_path):
    # A stock pre-LN block: scalars of the tokens' cosine and of the attention's entropy, the
    # history's values; then the same block with its query and key kernels scaled up 20x
    # collapses its attention and stops training.
    import zoo

    x = zoo.normal_batch(zoo.small_transformer(1), 0)
    y = np.zeros_like(x)
    for scale, healthy in ((1.0, True), (20.0, False)):
        keras.utils.set_random_seed(0)
        model = zoo.scale_query_key(zoo.small_transformer(1, name=f"tf{int(scale)}"), scale)
        model.compile("adam", "mse")
        monitor = SignalMonitor(tmp_path / str(scale), probe_data=x, every_n_steps=2,
                                on_finding="stop")
        history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[monitor])
        events = EventAccumulator(str(tmp_path / str(scale)),
                                  size_guidance={"tensors": 0}).Reload()
        tags = set(events.Tags()["tensors"])
        paths = list(monitor.history["activations"])
        mha = next(p for p in paths if p.endswith("block0_mha"))
        ff = next(p for p in paths if p.endswith("block0_add2"))  # the stream, on the way out
        for tag, path, field in ((f"attention/{mha}/entropy", mha, "attention_entropy"),
                                 (f"activation/{ff}/token_cosine", ff, "token_cosine")):
            assert tag in tags
            logged = [float(np.asarray(__import__("tensorflow").make_ndarray(e.tensor_proto)))
                      for e in events.Tensors(tag)]
            np.testing.assert_allclose(logged, monitor.history["activations"][path][field],
                                       rtol=1e-6)
        entropy = monitor.history["activations"][mha]
        ratio = entropy["attention_entropy"][0] / entropy["attention_max_entropy"][0]
        collapsed = [f for _, f in monitor.history["findings"] if f.kind == "entropy_collapse"]
        assert (ratio > 0.5 and not collapsed) if healthy else (ratio < 0.2 and collapsed)
        assert len(history.history["loss"]) == (3 if healthy else 1)


def test_findings_warn_once_per_kind_and_layer(tmp_path):
    x = batch(64)
    model = mlp("kit_glorot_normal", depth=20)
    model.compile(keras.optimizers.SGD(1e-4), "mse")
    monitor = SignalMonitor(tmp_path, probe_data=x, every_n_steps=1)
    with pytest.warns(UserWarning, match="kit_he") as caught:
        model.fit(x, x, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    vanishing = [w for w in caught if "vanishing" in str(w.message)]
    assert len(vanishing) == 1 and len(monitor.history["findings"]) >= 5
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    texts = [e.tensor_proto.string_val[0].decode() for e in events.Tensors("findings")]
    assert len(texts) == len(monitor.history["step"]) and "vanishing" in texts[0]


@pytest.mark.parametrize("mode", ["stop", "raise", "callable"])
def test_on_finding_modes(tmp_path, mode):
    # N(0, 0.02) under ReLU keeps 0.02 * sqrt(64) = 0.16 of the RMS a layer: an error.
    x = batch(64)
    model = mlp(keras.initializers.RandomNormal(stddev=0.02), depth=20)
    model.compile(keras.optimizers.SGD(1e-4), "mse")
    seen = []
    monitor = SignalMonitor(tmp_path, probe_data=x, every_n_steps=1,
                            on_finding=seen.append if mode == "callable" else mode)
    if mode == "raise":
        with pytest.raises(FindingError, match="vanishing"):
            model.fit(x, x, batch_size=16, epochs=3, verbose=0, callbacks=[monitor])
        # Flushed before raising: the finding that stopped training is in the log.
        events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
        assert "vanishing" in events.Tensors("findings")[-1].tensor_proto.string_val[0].decode()
        return
    history = model.fit(x, x, batch_size=16, epochs=3, verbose=0, callbacks=[monitor])
    if mode == "stop":
        assert len(history.history["loss"]) == 1  # stopped at the end of the first epoch
    else:
        # Besides the signal's findings: the first layers' weights do not move at 1e-4.
        assert seen and all(f.kind in ("vanishing", "dead", "update") for f in seen)


def test_a_warning_is_warned_of_but_does_not_stop_or_raise(tmp_path):
    # Glorot under 20 ReLU layers shrinks the signal about 100-fold: it trains, slower.
    x = batch(64)
    model = mlp("kit_glorot_normal", depth=20)
    model.compile(keras.optimizers.SGD(1e-4), "mse")
    for mode in ("stop", "raise"):
        monitor = SignalMonitor(tmp_path / mode, probe_data=x, every_n_steps=1, on_finding=mode)
        with pytest.warns(UserWarning, match="warning: Activations vanishing"):
            history = model.fit(x, x, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
        assert len(history.history["loss"]) == 2
        found = [f for _, f in monitor.history["findings"]]
        assert found and all(f.severity == "warning" for f in found)


def test_an_unwritable_log_dir_fails_at_train_begin(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    model = classifier()
    x, y = data(32)
    monitor = SignalMonitor(blocker / "logs", probe_data=x)
    with pytest.raises(ValueError, match="cannot write to log_dir"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])


def test_a_failing_probe_warns_and_training_goes_on(tmp_path):
    model = classifier()
    x, y = data(64)
    monitor = SignalMonitor(tmp_path, probe_data=np.zeros((8, 5), "float32"), every_n_steps=1)
    with pytest.warns(UserWarning, match="probe at step"):
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 2


@pytest.mark.parametrize("kwargs,error,word", [
    ({"every_n_steps": 0}, ValueError, "every_n_steps"),
    ({"on_finding": "shout"}, ValueError, "on_finding"),
    ({"dead_fraction": 2}, ValueError, "dead_fraction"),
    ({"layers": ["dense"]}, ValueError, "histograms=True"),
    ({"layers": "dense(", "histograms": True}, ValueError, "regular expression"),
    ({"layers": [3], "histograms": True}, TypeError, "layers"),
    ({"histograms": "yes"}, TypeError, "`histograms` must be True or False; received "
                                       "histograms='yes'"),
    ({"loss": "nonexistent_loss"}, ValueError, "`loss` must be None, a Keras loss name or a "
                                               "callable; received loss='nonexistent_loss'"),
    ({"vanishing_ration": 0.1}, TypeError, r"SignalMonitor\(\) got unknown threshold\(s\) "
                                           r"\['vanishing_ration'\]; allowed: .*vanishing_ratio"),
    ({"probe_data": 5}, TypeError, "`probe_data` inputs must be arrays or tensors with a "
                                   "batch axis"),
    ({"probe_data": (batch(4),) * 4}, ValueError, r"`probe_data` must be x, \(x, y\) or "
                                                  r"\(x, y, sample_weight\); received a tuple "
                                                  "of 4 items"),
])
def test_bad_arguments(tmp_path, kwargs, error, word):
    arguments = {"probe_data": batch(4), **kwargs}
    with pytest.raises(error, match=word):
        SignalMonitor(tmp_path, **arguments)


def test_probe_data_from_a_dataset_or_with_sample_weights_and_numpy_sizes(tmp_path):
    import tensorflow as tf

    x, y = data(64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    monitor = SignalMonitor(tmp_path, probe_data=dataset, every_n_steps=np.int64(2))
    np.testing.assert_array_equal(monitor.x, x[:16])  # its first batch
    np.testing.assert_array_equal(monitor.y, y[:16])
    weighted = SignalMonitor(tmp_path, probe_data=(x[:16], y[:16], np.ones(16)))
    assert weighted.y is not None and weighted.every_n_steps == 200
    model = classifier()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history["step"] == [0, 2, 4]
    import keras_initkit

    report = keras_initkit.diagnose(model, dataset)
    again = keras_initkit.diagnose(model, x[:16], y[:16])
    assert report.to_dict()["loss"] == pytest.approx(again.to_dict()["loss"], rel=1e-6)
    with pytest.raises(ValueError, match=r"`x` and `y` hold batches of different sizes "
                                         r"\[5, 16\]"):
        keras_initkit.diagnose(model, x[:16], y[:5])
    with pytest.raises(ValueError, match="`probe_data` holds batches of different sizes"):
        SignalMonitor(tmp_path, probe_data=(x[:16], y[:5]))


def test_without_probe_data_the_first_training_batch_is_used(tmp_path):
    x, y = data(128)
    model = classifier()
    monitor = SignalMonitor(tmp_path, every_n_steps=2)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.x, x[:16])
    np.testing.assert_array_equal(monitor.y, y[:16])
    assert monitor.history["step"] == [0, 2, 4, 6, 8]


def test_shuffled_arrays_give_the_shuffled_first_batch_and_training_is_unchanged(tmp_path):
    # fit shuffles arrays: the probe batch is the first batch training takes, not x[:16],
    # and the weights after the fit are those of the same fit without the monitor.
    x, y = data(128)
    fits = {}
    for name, callbacks in (("plain", []), ("monitored", [SignalMonitor(tmp_path)])):
        model = classifier()
        keras.utils.set_random_seed(7)  # the shuffle's order
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
        fits[name] = (model, callbacks)
    monitor = fits["monitored"][1][0]
    rows = {tuple(row) for row in x}
    assert len(monitor.x) == 16 and all(tuple(row) in rows for row in np.asarray(monitor.x))
    assert not np.array_equal(monitor.x, x[:16])
    for a, b in zip(fits["plain"][0].variables, fits["monitored"][0].variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_the_first_batch_costs_no_new_trace_of_the_training_step(tmp_path):
    # TensorFlow: the batch taken is given back through an iterator of the same spec, so the
    # train step is traced once; a fit of no step leaves the train function as it was. Adam
    # is built before the first step: built inside it, its moments would make TensorFlow
    # trace the step twice (as Keras alone does).
    import tensorflow as tf

    from keras_initkit.callbacks.first_batch import on_first_batch

    traces = []

    class Counted(keras.Sequential):
        def train_step(self, data):
            traces.append(1)  # runs when the step is traced, not at each step
            return super().train_step(data)

    x, y = data(96)
    model = Counted([keras.Input((16,)), L.Dense(2)])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=2).batch(32)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[SignalMonitor(tmp_path)])
    assert len(traces) == 1
    original = model.train_function
    cancel = on_first_batch(model, lambda x, y: None)
    assert model.train_function is not original
    cancel()
    assert model.train_function is original
    # Arguments of a kind it does not know: nothing taken, a warning, the step as it was.
    received = []
    on_first_batch(model, lambda x, y: received.append(x))
    steps = int(model.optimizer.iterations.numpy())
    with pytest.warns(UserWarning, match="pass probe_data"):
        model.train_function(iter([(x[:8], y[:8])]))  # a Python iterator, not tf.data
    assert received == [] and int(model.optimizer.iterations.numpy()) == steps + 1
    assert model.train_function is original


def test_the_probe_is_traced_once_with_its_update_copies(tmp_path, monkeypatch):
    # The update ratios' copies are variables: made inside the trace, they would make
    # TensorFlow trace the whole probe twice (twice the first probe's time).
    from keras_initkit.callbacks.weight_updates import WeightUpdates

    traced = []
    in_graph = WeightUpdates.in_graph
    monkeypatch.setattr(WeightUpdates, "in_graph",
                        lambda self, *args: traced.append(1) or in_graph(self, *args))
    x, y = data(64)
    model = keras.Sequential([keras.Input((16,)), L.Dense(8, activation="relu"), L.Dense(2)])
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = SignalMonitor(tmp_path, every_n_steps=1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history["step"] == [0, 1, 2, 3, 4] and len(traced) == 1
    assert np.isfinite(monitor.history["weights"][model.layers[0].kernel.path]["update_ratio"][-1])


@pytest.mark.parametrize("source", ["generator", "dataset_on_a_generator", "cached_dataset"])
def test_data_that_cannot_be_read_twice_gives_its_first_batch(tmp_path, source):
    # Read once, by training: the probe batch is the batch its train function took first.
    import tensorflow as tf

    x, y = data(64)
    model = classifier()

    def batches():
        for start in range(0, 64, 16):
            yield x[start:start + 16], y[start:start + 16]

    spec = (tf.TensorSpec((None, 16), tf.float32), tf.TensorSpec((None,), tf.int32))
    inputs = {"generator": batches(),
              "dataset_on_a_generator": tf.data.Dataset.from_generator(batches,
                                                                       output_signature=spec),
              "cached_dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(16).cache()}
    monitor = SignalMonitor(tmp_path, every_n_steps=2)
    model.fit(inputs[source], steps_per_epoch=4, epochs=1, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.x, x[:16])
    np.testing.assert_array_equal(monitor.y, y[:16])
    assert monitor.history["step"] == [0, 2, 4]


def test_a_shuffled_dataset_gives_training_first_batch_and_training_is_unchanged(tmp_path):
    # The probe batch is the batch training starts with, taken as training takes it, and
    # training still sees the order it would without the monitor.
    import tensorflow as tf

    x, y = data(96)

    def pipeline():
        noisy = lambda a, b: (a + tf.random.uniform(tf.shape(a), seed=4), b)  # noqa: E731
        return (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=3).map(noisy)
                .batch(32).prefetch(2))

    first_x, first_y = next(iter(pipeline()))
    plain = classifier()
    plain.fit(pipeline(), epochs=2, verbose=0)
    monitored = classifier()
    monitor = SignalMonitor(tmp_path, every_n_steps=2)
    monitored.fit(pipeline(), epochs=2, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.x, first_x)
    np.testing.assert_array_equal(monitor.y, first_y)
    assert not np.array_equal(monitor.y, y[:32])  # shuffled: not the unshuffled head
    for a, b in zip(plain.variables, monitored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_dataset_without_random_ops_gives_its_first_batch_and_training_is_unchanged(tmp_path):
    import tensorflow as tf

    x, y = data(96)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).map(lambda a, b: (a * 2.0, b)).batch(32)
    plain = classifier()
    plain.fit(dataset, epochs=1, verbose=0)
    monitored = classifier()
    monitor = SignalMonitor(tmp_path, every_n_steps=1)
    monitored.fit(dataset, epochs=1, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.x, x[:32] * 2.0)
    np.testing.assert_array_equal(monitor.y, y[:32])
    for a, b in zip(plain.variables, monitored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_shuffled_dataset_steps_per_execution_and_nested_multi_output(tmp_path):
    # Non-interference and step counting beyond plain arrays: a shuffled tf.data pipeline,
    # four steps per execution, and a nested, two-output model.
    import tensorflow as tf

    x, y = data(160)

    def build():
        keras.utils.set_random_seed(0)
        inner = keras.Sequential([L.Dense(16, activation="relu"), L.Dropout(0.2)], name="inner")
        inputs = keras.Input((16,))
        hidden = inner(inputs)
        model = keras.Model(inputs, [L.Dense(2, name="p")(hidden), L.Dense(1, name="q")(hidden)])
        model.compile(keras.optimizers.SGD(0.05), loss=["mse", "mse"], steps_per_execution=4)
        return model

    def pipeline():
        targets = (np.eye(2, dtype="float32")[y], x[:, :1])
        return tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(160, seed=1).batch(16)

    plain, monitored = build(), build()
    plain.fit(pipeline(), epochs=2, verbose=0)
    monitor = SignalMonitor(tmp_path, probe_data=(x[:32], (np.eye(2, dtype="float32")[y[:32]],
                                                             x[:32, :1])), every_n_steps=8)
    monitored.fit(pipeline(), epochs=2, verbose=0, callbacks=[monitor])
    for a, b in zip(plain.variables, monitored.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert int(monitored.optimizer.iterations.numpy()) == 20
    assert monitor.history["step"] == [0, 8, 18, 20]  # chunk starts: 0 4 8 | 10 14 18; end
    # The nested model and each of its layers, by path, and both heads.
    inner = monitored.get_layer("inner")
    assert set(monitor.history["activations"]) == {
        "inner", *(f"inner/{layer.name}" for layer in inner.layers), "p", "q"}


def test_nan_in_the_data_is_reported_during_training(tmp_path):
    x, y = data(64)
    x[5, 3] = np.nan
    model = classifier()
    seen = []
    monitor = SignalMonitor(tmp_path, probe_data=x[:16], every_n_steps=2, on_finding=seen.append)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert any(f.kind == "nonfinite" and f.layer == model.layers[0].name for f in seen)
    # Each probe wrote once, the exact statistics (a second pass): NaN counted, std finite.
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    path = model.layers[0].path
    for field in ("nan_count", "std"):
        written = events.Tensors(f"activation/{path}/{field}")
        assert [e.step for e in written] == monitor.history["step"]
        np.testing.assert_allclose(
            [float(np.asarray(__import__("tensorflow").make_ndarray(e.tensor_proto)))
             for e in written], monitor.history["activations"][path][field], rtol=1e-6)
    assert monitor.history["activations"][path]["nan_count"][0] > 0
    assert np.isfinite(monitor.history["activations"][path]["std"]).all()


@pytest.mark.parametrize("layers", [["kept", "clf/act", "clf/out"], r"kept|/act$|/out$"])
def test_histograms_only_for_the_chosen_layers(tmp_path, layers):
    keras.utils.set_random_seed(0)
    # "act" has no weights: it is chosen by its path in the model all the same.
    model = keras.Sequential([keras.Input((16,)), L.Dense(8, name="kept"),
                              L.Activation("relu", name="act"), L.Dense(8, name="skipped"),
                              L.Dense(2, name="out")], name="clf")
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data()
    monitor = SignalMonitor(tmp_path, every_n_steps=4, histograms=True, layers=layers)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    tags = set(EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
               .Tags()["tensors"])
    histograms = {t for t in tags if not t.endswith(("/mean", "/std", "/grad_rms", "/dead_fraction",
                                                     "/saturated_fraction", "/nan_count",
                                                     "/weight_norm", "/grad_norm",
                                                     "/grad_to_weight", "/update_ratio"))
                  and t != "findings"}
    assert histograms == {f"activation/{path}" for path in ("clf/kept", "clf/act", "clf/out")} | {
        f"{kind}/{name}/{w}" for name in ("clf/kept", "clf/out") for w in ("kernel", "bias")
        for kind in ("gradient", "weight")}
    assert "activation/clf/skipped/std" in tags  # scalars still cover every layer


def test_unknown_layer_names_fail_at_train_begin(tmp_path):
    model = classifier()
    monitor = SignalMonitor(tmp_path, probe_data=batch(8), histograms=True, layers=["nope"])
    with pytest.raises(ValueError, match="nope"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[monitor])


def test_freeze_then_unfreeze_between_fits_logs_each_weight_as_itself(tmp_path):
    # Keras' transfer-learning recipe: train the head on a frozen base, then unfreeze and
    # fine-tune. The monitor's probe must follow the new set of trainable weights.
    x, y = data(64)
    model = classifier()
    base = model.layers[0]
    base.trainable = False
    monitor = SignalMonitor(tmp_path, probe_data=(x[:32], y[:32]), every_n_steps=1)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    # Frozen: no gradient row, only how far it moved (not at all).
    assert "weight_norm" not in monitor.history["weights"][base.kernel.path]
    base.trainable = True
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    # The last probe (at the end of training) saw the final weights: each row is its own.
    for variable in model.trainable_variables:
        logged = monitor.history["weights"][variable.path]["weight_norm"][-1]
        assert logged == pytest.approx(float(np.linalg.norm(variable.numpy())), rel=1e-5), \
            variable.path


def test_a_zero_classifier_is_judged_after_one_step_by_the_monitor_too(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,))] + [
        L.Dense(32, activation="relu", kernel_initializer="kit_he") for _ in range(4)] + [
        L.Dense(4, kernel_initializer="zeros", name="classifier")])
    model.compile("adam", "mse")
    x = batch(32, 16)
    monitor = SignalMonitor(tmp_path, probe_data=x, every_n_steps=100, on_finding="raise")
    with pytest.warns(UserWarning, match="start at zero on purpose"):
        model.fit(x, np.zeros((32, 4), "float32"), epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history["step"][0] == 0 and not monitor.history["findings"]
