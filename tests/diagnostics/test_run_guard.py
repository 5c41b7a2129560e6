"""SignalMonitor(on_finding="restore") and the update ratios: a diverging run is put back to its
last healthy probe, bit for bit; the updates are measured and judged."""
import math
import random
import statistics
import warnings

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import keras_initkit
from keras_initkit._compat import learning_rate_schedule
from keras_initkit.base_models import mlp
from keras_initkit.callbacks import SignalMonitor
from keras_initkit.callbacks.run_guard import (
    LossWatch,
    ScaledSchedule,
    lower_learning_rate,
    state_variables,
)

L = keras.layers
BATCH = 64
STEPS = math.ceil(1797 / BATCH)  # steps per epoch of the digits


def digits():
    d = load_digits()
    return (d.data / 16.0).astype("float32"), d.target.astype("int32")


def he_mlp(learning_rate, momentum=0.9, seed=0):
    """Six He/ReLU Dense layers on the digits: SGD at 3.0 passes a loss of 1e2 by step 3."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((64,))] + [L.Dense(64, activation="relu", kernel_initializer="he_normal",
                                        name=f"dense_{i}") for i in range(5)]
        + [L.Dense(10, name="head")], name="mlp")
    model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class StateAtEachStep(keras.callbacks.Callback):
    """What a restore puts back, as arrays, at the start of every step (after the monitor's
    probe, which comes first in the callback list and changes nothing)."""

    def __init__(self):
        super().__init__()
        self.states = {}

    def on_train_batch_begin(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.states[step] = state(self.model)


def state(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in state_variables(model)]


def fit_quietly(model, x, y, callbacks, epochs=3, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                            callbacks=callbacks, **kwargs).history
    return history, [str(w.message) for w in caught if "SignalMonitor" in str(w.message)]


def all_finite(arrays):
    return all(np.all(np.isfinite(a)) for a in arrays)


@pytest.mark.parametrize("keep", ["host", "device"])
def test_a_diverging_run_is_put_back_to_its_last_healthy_probe_and_stopped(tmp_path, keep):
    x, y = digits()
    lost = he_mlp(3.0)
    lost.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert not all_finite(state(lost))  # without the guard, the run is lost

    model = he_mlp(3.0)
    monitor = SignalMonitor(tmp_path / "logs", every_n_steps=5, on_finding="restore", keep=keep)
    recorder = StateAtEachStep()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.weights.h5"),
                                                 save_weights_only=True)
    _, said = fit_quietly(model, x, y, [monitor, recorder, checkpoint])
    (restore,) = monitor.history["restores"]
    assert restore["action"] == "stopped"
    assert restore["restored_step"] in recorder.states
    assert restore["restored_step"] < restore["step"] < STEPS  # caught in the first epoch
    assert int(model.optimizer.iterations.numpy()) == restore["step"] + 1 or \
        int(model.optimizer.iterations.numpy()) == restore["step"]
    # Bit for bit: the weights and the optimizer's momenta of the last healthy probe.
    final = state(model)
    for kept, now, v in zip(recorder.states[restore["restored_step"]], final,
                            state_variables(model)):
        np.testing.assert_array_equal(now, kept, err_msg=v.path)
    assert monitor.snapshot_bytes == sum(a.nbytes for a in final)
    assert any("Restored the weights and optimizer state of step" in s for s in said)
    if keras.backend.backend() == "tensorflow":  # the copy is what the probe's call read
        result = monitor._probe(*monitor._batch)
        assert result.shared["hook"][1].state == monitor._snapshot.ids
        assert len(result.hook_tensors) == len(final)
    # The checkpoint after the monitor saved the restored weights, never a NaN.
    saved = sorted(tmp_path.glob("ckpt-*.weights.h5"))
    assert saved
    for path in saved:
        copy = he_mlp(3.0, seed=1)
        copy.load_weights(path)
        assert all_finite(copy.get_weights()), path.name
    # And TensorBoard says so.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0}).Reload()
    assert [e.step for e in events.Tensors("restore")] == [restore["step"]]


def test_after_restore_lower_lr_goes_on_to_a_finite_decreasing_loss(tmp_path):
    x, y = digits()
    model = he_mlp(3.0)
    monitor = SignalMonitor(tmp_path, every_n_steps=5, on_finding="restore",
                            after_restore="lower_lr")
    history, _ = fit_quietly(model, x, y, [monitor])
    restores = monitor.history["restores"]
    assert restores and all(r["action"].startswith("lowered the learning rate") for r in restores)
    assert int(model.optimizer.iterations.numpy()) == 3 * STEPS  # not stopped
    rate = float(model.optimizer.learning_rate.numpy())
    assert rate == pytest.approx(3.0 * 0.1 ** len(restores), rel=1e-6)
    losses = history["loss"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert all_finite(state(model))


def test_lower_lr_wraps_a_schedule_and_the_step_follows_it(tmp_path):
    x, y = digits()
    model = he_mlp(keras.optimizers.schedules.ExponentialDecay(3.0, 100, 0.9))
    monitor = SignalMonitor(tmp_path, every_n_steps=5, on_finding="restore",
                            after_restore="lower_lr")
    history, _ = fit_quietly(model, x, y, [monitor], epochs=2)
    restores = monitor.history["restores"]
    assert restores and restores[-1]["action"].endswith(f"x {0.1 ** len(restores):.3g}")
    wrapped = keras.optimizers.schedules.deserialize(
        model.optimizer.get_config()["learning_rate"])
    assert isinstance(wrapped, ScaledSchedule)  # one wrapper, its factors multiplied
    assert isinstance(wrapped.schedule, keras.optimizers.schedules.ExponentialDecay)
    assert all(math.isfinite(v) for v in history["loss"])
    assert history["loss"][-1] < history["loss"][0]


def test_a_nan_batch_is_undone_and_the_run_goes_on(tmp_path):
    # One NaN pixel in batch 10. The first ReLU maps the NaN to 0, so the loss stays finite,
    # but the first kernel's gradient (x^T delta) is NaN: the probe at step 12 finds the
    # weight, and the run goes on from step 8, the last healthy probe.
    x, y = digits()
    x = x.copy()
    x[10 * BATCH + 3, 5] = np.nan
    model = he_mlp(0.05)
    monitor = SignalMonitor(tmp_path, every_n_steps=4, on_finding="restore",
                            after_restore="lower_lr")
    recorder = StateAtEachStep()
    history, said = fit_quietly(model, x, y, [monitor, recorder], epochs=1)
    (restore,) = monitor.history["restores"]
    assert restore["reason"].startswith("nonfinite: The weight 'mlp/dense_0/kernel' holds NaN")
    assert restore["step"] == 12 and restore["restored_step"] == 8
    assert int(model.optimizer.iterations.numpy()) == STEPS  # the whole epoch ran
    for kept, now in zip(recorder.states[8], recorder.states[12]):  # step 12 began from 8
        np.testing.assert_array_equal(now, kept)
    assert all_finite(state(model)) and math.isfinite(history["loss"][-1])
    assert any("holds NaN" in s for s in said)


def test_non_finite_weights_at_an_epoch_end_are_restored_before_the_checkpoint(tmp_path):
    # Weights that turn NaN at an epoch's last step, whose loss was still finite: the
    # monitor's epoch-end check restores them before the checkpoint after it saves.
    x, y = digits()

    class Poison(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == STEPS - 1:
                kernel = self.model.layers[0].kernel
                kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    model = he_mlp(0.05)
    monitor = SignalMonitor(tmp_path / "logs", every_n_steps=5, on_finding="restore")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.weights.h5"),
                                                 save_weights_only=True)
    fit_quietly(model, x, y, [Poison(), monitor, checkpoint], epochs=1)
    (restore,) = monitor.history["restores"]
    assert restore["reason"] == "a weight is not finite at the epoch's end"
    assert restore["step"] == STEPS  # the weights were after the epoch's last step
    copy = he_mlp(0.05, seed=1)
    copy.load_weights(tmp_path / "ckpt.weights.h5")
    assert all_finite(copy.get_weights())


def test_update_ratios_are_the_relative_change_per_step(tmp_path):
    x, y = digits()
    model = he_mlp(1e-3, momentum=0.0)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = SignalMonitor(tmp_path, every_n_steps=4)
    recorder = StateAtEachStep()
    fit_quietly(model, x, y, [monitor, recorder], epochs=1)
    steps = monitor.history["step"]
    assert steps[-1] == STEPS  # the last probe, at the end of training
    recorder.states[STEPS] = state(model)
    index = {v.path: i for i, v in enumerate(state_variables(model))}
    compared = 0
    for path, series in monitor.history["weights"].items():
        ratios = series["update_ratio"]
        assert len(ratios) == len(steps) and math.isnan(ratios[0])
        for before, after, ratio in zip(steps, steps[1:], ratios[1:]):
            old = recorder.states[before][index[path]].astype(np.float64)
            new = recorder.states[after][index[path]].astype(np.float64)
            if not np.any(old):  # a bias that starts at zero: no ratio
                assert math.isnan(ratio)
                continue
            expected = np.linalg.norm(new - old) / np.linalg.norm(old) / (after - before)
            assert ratio == pytest.approx(expected, rel=1e-4), (path, before)
            compared += 1
    assert compared >= 6 * (len(steps) - 1)  # every kernel at every probe after the first
    # TensorBoard holds the same ratios (computed in float32 inside the probe's call), each
    # finite one, at its probe's step.
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    for path, series in monitor.history["weights"].items():
        expected = [(step, r) for step, r in zip(steps, series["update_ratio"])
                    if math.isfinite(r)]
        logged = [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                  for e in events.Tensors(f"weight/{path}/update_ratio")] if expected else []
        assert [s for s, _ in logged] == [s for s, _ in expected], path
        np.testing.assert_allclose([r for _, r in logged], [r for _, r in expected], rtol=1e-5)


class CutGradient(L.Layer):
    def call(self, x):
        return keras.ops.stop_gradient(x)


@pytest.mark.parametrize("how, cause", [("frozen", "trainable=False"),
                                        ("cut", "its gradient is zero")])
def test_a_weight_that_does_not_move_is_flagged(tmp_path, how, cause):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    side = L.Dense(32, activation="relu", name="side")(inputs)
    if how == "cut":
        side = CutGradient()(side)
    main = L.Dense(32, activation="relu", name="main")(inputs)
    model = keras.Model(inputs, L.Dense(10, name="head")(L.Concatenate()([main, side])))
    if how == "frozen":
        model.get_layer("side").trainable = False  # its kernel is still in model.weights
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = digits()
    monitor = SignalMonitor(tmp_path, every_n_steps=3)
    fit_quietly(model, x[:BATCH * 9], y[:BATCH * 9], [monitor], epochs=1)
    found = [f for _, f in monitor.history["findings"] if f.kind == "update"]
    assert found and {f.path for f in found} == {"side/kernel"}
    assert all(f.severity == "warning" and cause in f.message for f in found)
    assert monitor.history["weights"]["side/kernel"]["update_ratio"][1:] == [0.0] * 3
    assert monitor.history["weights"]["main/kernel"]["update_ratio"][1] > 0


def test_a_healthy_he_mlp_of_initkit_compare_raises_no_update_finding(tmp_path):
    x, y = digits()
    net = mlp((64,), 10)  # `initkit compare`'s base model: 20 Dense(64, relu)
    keras_initkit.reinitialize(net, "kit_he", seed=0)  # its scheme "he"
    net.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = SignalMonitor(tmp_path, every_n_steps=STEPS // 2)
    fit_quietly(net, x, y, [monitor], epochs=2)
    ratios = [r for s in monitor.history["weights"].values() for r in s["update_ratio"][1:]
              if math.isfinite(r)]
    assert ratios and max(ratios) < 0.1
    assert [f for _, f in monitor.history["findings"] if f.kind == "update"] == []


def test_update_copies_stay_bounded_under_gradual_unfreezing():
    # Each set of watched weights has its own copy, made before a probe is traced for it
    # (as the probe calls `before_trace`); freezing layer after layer makes one per step,
    # and only the probe's latest MAX_TRACES traces can use theirs.
    import tensorflow as tf

    from keras_initkit.callbacks.weight_updates import WeightUpdates
    from keras_initkit.diagnostics.probe import MAX_TRACES

    model = mlp((16,), 4, depth=MAX_TRACES + 2, width=8)
    dense = [layer for layer in model.layers if layer.weights]
    updates, kept = WeightUpdates(), []
    for layer in dense:
        layer.trainable = False  # its bias is no longer watched: a new weight set
        updates.before_trace(model)
        tf.function(lambda: updates.in_graph(model,
                                             tf.constant(True))[3]).get_concrete_function()
        kept.append(len(updates._copies))
    assert kept == [min(i + 1, MAX_TRACES) for i in range(len(dense))]
    paths = tuple(w.path for w in model.weights if len(w.shape) >= 2)  # the last set
    assert list(updates._copies)[-1] == paths


def test_loss_watch_recovers_each_batch_loss_from_the_running_mean():
    watch = LossWatch(spike=10.0)
    losses = [2.0, 1.8, 1.7, 1.6, 40.0]
    means = np.cumsum(losses) / np.arange(1, len(losses) + 1)
    said = [watch(batch, mean) for batch, mean in enumerate(means)]
    assert said[:4] == [None] * 4 and list(watch.recent) == pytest.approx(losses[:4])
    assert said[4].startswith("the batch loss 40 is above 10 x the median")
    assert watch(4, means[4]) is None  # the same batch again (a chunk of steps): nothing new
    assert watch(5, float("inf")) == "the training loss is inf"
    watch.reset(last_batch=5)  # a restore reset Keras' mean after batch 5
    assert watch(6, 1.5) is None and watch.recent[-1] == pytest.approx(1.5)


def test_a_converged_runs_noisy_batch_is_no_spike_and_a_divergence_is():
    # Near zero loss one misclassified sample puts a batch at 18x the median; a diverging
    # run passes the level the loss started at.
    watch = LossWatch(spike=10.0)
    losses = [2.3, 1.2, 0.6] + [0.008 + 0.001 * (i % 3) for i in range(40)] + [0.157]
    means = [sum(losses[:i + 1]) / (i + 1) for i in range(len(losses))]
    assert all(watch(batch, mean) is None for batch, mean in enumerate(means))
    assert watch.peak == pytest.approx(1.75)  # the median of the first two batches
    diverged = 30.0
    said = watch(len(losses), (sum(losses) + diverged) / (len(losses) + 1))
    assert said.startswith("the batch loss 30 is above 10 x the median") and "(1.75)" in said
    # A new fit: a new window (its first losses are not spikes against the last fit's
    # median), and the peak kept.
    watch.start()
    assert not watch.recent and watch.best is None and watch.peak == pytest.approx(1.75)
    assert watch(0, 5.0) is None and watch(1, 4.0) is None


def test_loss_watch_median_is_the_median_of_its_window():
    rng = random.Random(0)
    watch = LossWatch(spike=None, window=7)
    seen = []
    for batch in range(60):
        loss = rng.choice([1.0, 2.0, rng.random()])  # ties too
        seen.append(loss)
        mean = sum(seen) / len(seen)
        assert watch(batch, mean) is None
        assert watch._median() == pytest.approx(statistics.median(seen[-7:]), rel=1e-9)


def test_a_slowly_degrading_run_is_not_copied():
    # Each batch 1.2x the one before: never a spike, but 30 batches on the median is 10x
    # its lowest at a copy, and the state is no longer copied.
    watch = LossWatch(spike=10.0, window=5)
    assert watch.may_copy() is None  # no losses yet: nothing to judge
    watch.reset()
    copied = []
    for batch in range(60):
        loss = 2.0 * 1.2 ** max(0, batch - 10)
        assert watch(batch, (sum(2.0 * 1.2 ** max(0, b - 10) for b in range(batch + 1)))
                     / (batch + 1)) is None
        if batch % 5 == 4:
            copied.append((loss, watch.may_copy()))
    assert watch.best == pytest.approx(2.0)
    assert all(reason is None for loss, reason in copied if loss < 10 * 2.0)
    refused = [reason for loss, reason in copied if loss > 10 * 2.0 * 1.2 ** 3]
    assert refused and all(r is not None and "above 10 x its lowest at a copy (2)" in r
                           for r in refused)


def test_scaled_schedule_round_trips_and_scales():
    schedule = ScaledSchedule(keras.optimizers.schedules.CosineDecay(1e-2, 100), 0.1)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, ScaledSchedule) and again.get_config() == schedule.get_config()
    for step in (0, 50, 100):
        inner = float(schedule.schedule(step))
        assert float(again(step)) == pytest.approx(0.1 * inner, rel=1e-6)
    optimizer = keras.optimizers.SGD(schedule)
    model = keras.Sequential([keras.Input((2,)), L.Dense(1)])
    model.compile(optimizer, "mse")
    assert lower_learning_rate(model, 0.5) == "CosineDecay x 0.05"  # one wrapper
    with pytest.raises(TypeError, match="received schedule=0.1"):
        ScaledSchedule(0.1, 0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(restore_on=["exploding", "slow"]), "`restore_on` must be"),
    (dict(restore_on=[]), "`restore_on` must be"),
    (dict(after_restore="continue"), "`after_restore` must be"),
    (dict(keep="disk"), "`keep` must be"),
    (dict(lr_factor=1.5), "`lr_factor` must be a number strictly between 0 and 1; received "
                          "lr_factor=1.5"),
    (dict(loss_spike=1.0), "`loss_spike` must be None or a number > 1; received "
                           "loss_spike=1.0"),
])
def test_bad_restore_arguments_are_refused_at_construction(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        SignalMonitor(tmp_path, on_finding="restore", **kwargs)


def test_restore_arguments_without_restore_are_refused_and_numpy_numbers_taken(tmp_path):
    with pytest.raises(ValueError, match=r"`after_restore`, `keep` only apply with "
                       r"on_finding='restore'; received on_finding='warn' with "
                       r"after_restore='lower_lr', keep='device'\."):
        SignalMonitor(tmp_path, after_restore="lower_lr", keep="device")
    with pytest.raises(ValueError, match=r"`restore_on` must be .* received "
                                         r"restore_on=\[\['nonfinite'\]\]"):
        SignalMonitor(tmp_path, on_finding="restore", restore_on=[["nonfinite"]])
    monitor = SignalMonitor(tmp_path, on_finding="restore", lr_factor=np.float32(0.5),
                            loss_spike=np.float32(20.0))
    assert monitor.lr_factor == 0.5 and monitor.loss_spike == 20.0


def test_lower_lr_takes_a_users_schedule_and_a_loss_scale_optimizers(tmp_path):
    class Warmup(keras.optimizers.schedules.LearningRateSchedule):  # not registered
        def __init__(self, rate):
            self.rate = rate

        def __call__(self, step):
            return self.rate * keras.ops.minimum(1.0, keras.ops.cast(step + 1, "float32") / 10)

        def get_config(self):
            return {"rate": self.rate}

    decay = keras.optimizers.schedules.ExponentialDecay(0.5, 100, 0.9)
    for optimizer, expected, schedule in [
            (keras.optimizers.SGD(Warmup(0.5)), "Warmup x 0.1", Warmup),
            (keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(decay)),
             "ExponentialDecay x 0.1", keras.optimizers.schedules.ExponentialDecay)]:
        model = keras.Sequential([keras.Input((2,)), L.Dense(1)])
        model.compile(optimizer, "mse")
        before = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        assert lower_learning_rate(model, 0.1) == expected
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        assert isinstance(learning_rate_schedule(inner).schedule, schedule)
        after = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        assert after == pytest.approx(0.1 * before, rel=1e-6)


def test_an_epoch_emptied_by_a_restore_logs_its_healthy_mean_not_zero(tmp_path):
    # A NaN target in the epoch's last batch: the loss check restores after it, and Keras'
    # epoch mean, emptied, would read 0 (a "best" loss for the checkpoint after).
    x, y = digits()
    x, y = x[:4 * BATCH], np.eye(10, dtype="float32")[y[:4 * BATCH]]
    y[-1, 0] = np.nan
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), L.Dense(32, activation="relu"), L.Dense(10)])
    model.compile(keras.optimizers.SGD(0.05), "mse", metrics=["mae"])
    monitor = SignalMonitor(tmp_path / "logs", every_n_steps=2, on_finding="restore",
                            after_restore="lower_lr")
    losses = []

    class BatchLosses(keras.callbacks.Callback):  # Keras' running mean, before the restore
        def on_train_batch_end(self, batch, logs=None):
            losses.append(logs["loss"])

    history, _ = fit_quietly(model, x, y, [BatchLosses(), monitor], epochs=2)
    assert [r["step"] for r in monitor.history["restores"]] == [4, 8]
    for epoch in range(2):  # the mean of batches 0-2, recovered from Keras' running means
        assert history["loss"][epoch] == pytest.approx(losses[4 * epoch + 2], rel=1e-5)
        assert math.isnan(history["mae"][epoch])


def test_a_second_fit_starts_a_new_loss_window_and_nothing_stale(tmp_path):
    # The first fit's losses end far below the second fit's (targets ten times larger):
    # judged against them, the second fit's first batch was a spike. A stop left over from
    # the first fit (a restore by its final probe) must not undo the second fit's first
    # step either.
    x, y = digits()
    targets = np.eye(10, dtype="float32")[y]
    model = he_mlp(0.05)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    monitor = SignalMonitor(tmp_path, every_n_steps=8, on_finding="restore")

    class Blow(keras.callbacks.Callback):  # exploding (finite) weights after the last step
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 2 * STEPS:
                for layer in self.model.layers[:5]:
                    layer.kernel.assign(layer.kernel * 30.0)

    fit_quietly(model, x, targets, [Blow(), monitor], epochs=2)
    (restore,) = monitor.history["restores"]
    assert restore["reason"].startswith("exploding") and restore["step"] == 2 * STEPS
    assert monitor._loss_watch._median() < 0.1
    before, first = state(model), {}

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            first.setdefault("state", state(self.model))

    history, _ = fit_quietly(model, x, 10 * targets, [monitor, FirstStep()], epochs=1)
    assert monitor.history["restores"] == [restore] and math.isfinite(history["loss"][0])
    assert int(model.optimizer.iterations.numpy()) == 3 * STEPS
    assert not np.array_equal(first["state"][0], before[0])  # its first step was not undone
    assert monitor.history["step"][-1] == 3 * STEPS


def test_the_last_step_is_probed_when_another_callback_stops_the_run(tmp_path):
    x, y = digits()
    model = he_mlp(0.05)
    monitor = SignalMonitor(tmp_path, every_n_steps=100)

    class StopAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = batch == 10

    fit_quietly(model, x, y, [monitor, StopAt()], epochs=1)
    assert monitor.history["step"] == [0, 11]


def test_biases_and_kernels_growing_from_zero_are_not_judged_too_large(tmp_path):
    # Attention's (heads, head size) biases and a zero-initialized readout start at zero:
    # a healthy Adam step moves them by their whole norm. Judged as kernels, they stopped a
    # stock GPT-2 under on_finding="stop".
    keras.utils.set_random_seed(0)
    tokens = keras.Input((8, 16))
    h = L.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(tokens, tokens)
    out = L.Dense(1, kernel_initializer="zeros", name="head")(L.GlobalAveragePooling1D()(h))
    model = keras.Model(tokens, out)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 16)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    monitor = SignalMonitor(tmp_path, every_n_steps=1, on_finding="stop")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    assert int(model.optimizer.iterations.numpy()) == 16  # not stopped
    assert not [f for _, f in monitor.history["findings"] if f.kind == "update"]
    ratios = monitor.history["weights"]
    assert np.nanmax(ratios["mha/key/bias"]["update_ratio"]) > 0.1  # what used to be judged
    assert np.nanmax(ratios["head/kernel"]["update_ratio"]) > 0.1
    assert np.nanmax(ratios["mha/key/kernel"]["update_ratio"]) < 0.1  # the kernels: healthy


def test_history_keeps_one_value_per_probe_when_a_layer_is_frozen_between_fits(tmp_path):
    x, y = digits()
    x, y = x[:4 * BATCH], y[:4 * BATCH]
    model = he_mlp(0.05)
    monitor = SignalMonitor(tmp_path, every_n_steps=2)
    for frozen in (False, True, False):  # the first layer frozen in the middle fit
        model.layers[0].trainable = not frozen
        model.compile(model.optimizer, model.loss)
        fit_quietly(model, x, y, [monitor], epochs=1)
    history = monitor.history
    assert history["step"] == [0, 2, 4, 6, 8, 10, 12]
    columns = [column for group in ("activations", "weights") for series in
               history[group].values() for column in series.values()]
    assert {len(column) for column in columns} == {7}
    kernel = history["weights"]["mlp/dense_0/kernel"]
    assert np.isnan(kernel["grad_norm"][3:5]).all()  # frozen: no gradient measured
    # Unfrozen at step 8: its copy (of step 4) is stale; the ratio starts anew at step 10.
    assert math.isnan(kernel["update_ratio"][5]) and math.isfinite(kernel["update_ratio"][6])
    assert kernel["update_ratio"][4] == 0.0  # frozen through steps 6-8


@pytest.mark.parametrize("optimizer", ["accumulating", "loss_scale"])
def test_steps_count_batches_when_the_optimizer_updates_less_often(tmp_path, optimizer):
    # Adam accumulating 4 batches per update, or mixed precision's loss-scale optimizer,
    # whose first steps overflow float16 and are skipped: the optimizer's iterations lag
    # the batches. Steps go on increasing across fits, and a probe interval without an
    # update is no frozen weight.
    x, y = digits()
    x, y = x[:8 * BATCH], y[:8 * BATCH]
    policy = keras.mixed_precision.global_policy()
    try:
        if optimizer == "loss_scale":
            keras.mixed_precision.set_global_policy("mixed_float16")
        model = he_mlp(0.05)
        model.compile(keras.optimizers.Adam(1e-3, gradient_accumulation_steps=4)
                      if optimizer == "accumulating" else  # 2^30 overflows float16 at first
                      keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), 2.0 ** 30),
                      model.loss)
        monitor = SignalMonitor(tmp_path, every_n_steps=2)
        for _ in range(2):
            fit_quietly(model, x, y, [monitor], epochs=2)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert monitor.history["step"] == list(range(0, 33, 2))
    assert int(model.optimizer.iterations.numpy()) < 32
    assert not [f for _, f in monitor.history["findings"] if f.kind == "update"]
