"""Runs keras_initkit under tf.distribute.MirroredStrategy on 2 logical CPUs; writes JSON.

Run by test_mirrored.py in a fresh process: the logical devices must be set before
TensorFlow initializes its devices. Usage: python mirrored_script.py OUT.json LOG_DIR.
The script measures; the tests judge.
"""
import json
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_initkit  # noqa: E402
from keras_initkit.callbacks import LSUVInit, SignalMonitor  # noqa: E402
from keras_initkit.diagnostics import Probe  # noqa: E402

L = keras.layers
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def replicas(variable):
    """The per-device copies of a Keras variable, as arrays."""
    return [np.asarray(t) for t in STRATEGY.experimental_local_results(variable.value)]


def replica_report(model):
    """Per weight: is it mirrored on both devices, and are the copies identical."""
    return {v.path: {"kind": type(v.value).__name__, "copies": len(replicas(v)),
                     "identical": all(np.array_equal(r, replicas(v)[0]) for r in replicas(v))}
            for v in model.weights}


def diff(model, single):
    """Largest |difference| between the first copy of each weight and the single-device one."""
    return max(float(np.max(np.abs(replicas(v)[0] - w.numpy()), initial=0.0))
               for v, w in zip(model.weights, single.weights))


def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype("float32")
    return x, rng.integers(0, 3, n).astype("int32")


def net(norm=True):
    """A small classifier; with BatchNormalization and Dropout when `norm`."""
    layers = [keras.Input((16,)), L.Dense(64, kernel_initializer="kit_he")]
    if norm:
        layers += [L.BatchNormalization(), L.Activation("relu"), L.Dropout(0.25, seed=7)]
    else:
        layers += [L.Activation("relu")]
    layers += [L.Dense(32, activation="tanh", kernel_initializer="kit_glorot"),
               L.Dense(3, kernel_initializer="kit_lecun_normal")]
    model = keras.Sequential(layers, name="net")
    model.compile(keras.optimizers.SGD(1.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def twins(norm=True):
    """The same network under the strategy and on one device, with the same weights."""
    with STRATEGY.scope():
        model = net(norm)
    single = net(norm)
    single.set_weights(model.get_weights())
    return model, single


def initializers():
    out = {}
    for alias in ("kit_he", "kit_glorot", "kit_lecun_normal", "kit_orthogonal"):
        with STRATEGY.scope():
            layer = L.Dense(256, kernel_initializer=alias)
            layer.build((None, 512))
        copies = replicas(layer.kernel)
        w = copies[0].astype("float64")
        out[alias] = {"kind": type(layer.kernel.value).__name__,
                      "devices": [t.device for t in
                                  STRATEGY.experimental_local_results(layer.kernel.value)],
                      "identical": all(np.array_equal(c, copies[0]) for c in copies),
                      "std": float(w.std()), "mean": float(w.mean()),
                      # Orthogonal: how far W^T W is from I
                      "gram_error": float(np.max(np.abs(w.T @ w - np.eye(256))))}
    return out


def diagnoses():
    x, y = data(64)
    model, single = twins()
    out = {"strategy": keras_initkit.diagnose(model, x, y).to_dict(),
           "single": keras_initkit.diagnose(single, x, y).to_dict(),
           "strategy_surrogate": keras_initkit.diagnose(model, x).to_dict(),
           "single_surrogate": keras_initkit.diagnose(single, x).to_dict()}
    other_model, _ = twins()  # a fresh trace, inside the scope this time
    other_model.set_weights(model.get_weights())
    with STRATEGY.scope():
        out["strategy_in_scope"] = keras_initkit.diagnose(other_model, x, y).to_dict()
    out["replicas_after"] = replica_report(model)
    return out


def gradients():
    """The probe's gradients against the update the optimizer made: SGD(1.0), one step on the
    whole batch (two shards of 32), so the update is minus the all-reduced gradient."""
    x, y = data(64)
    model, single = twins(norm=False)
    on_strategy = Probe(model)(x, y, with_tensors=True).gradient_tensors
    on_single = Probe(single)(x, y, with_tensors=True).gradient_tensors
    before = [replicas(v)[0] for v in model.trainable_variables]
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    applied = [(b - replicas(v)[0]).tolist() for b, v in zip(before, model.trainable_variables)]
    # In the order of model.trainable_variables (the two models' names differ).
    return {"paths": [p for p, _ in on_strategy],
            "strategy": [np.asarray(g).tolist() for _, g in on_strategy],
            "single": [np.asarray(g).tolist() for _, g in on_single],
            "applied": applied, "replicas_after_step": replica_report(model)}


def monitor(log_dir):
    x, y = data()
    model, single = twins()
    plain, _ = twins()
    plain.set_weights(model.get_weights())
    reference = keras_initkit.diagnose(single, x[:32], y[:32]).to_dict()  # fit's first batch
    watcher = SignalMonitor(log_dir, every_n_steps=3)  # its probe batch: fit's first batch
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[watcher])
    plain.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    first = {part: [{k: v[0] for k, v in series.items()}  # rows of the first probe, in order
                    for series in watcher.history[part].values()]
             for part in ("activations", "weights")}
    return {"steps": watcher.history["step"], "first_probe": first, "reference": reference,
            "same_weights_as_without": diff(model, plain) == 0.0,
            "events": sorted(f for f in os.listdir(log_dir) if "tfevents" in f)}


def restore(log_dir):
    """on_finding="restore" under the strategy: a NaN in batch 4 reaches every weight; the
    probe at step 6 restores step 3's state."""
    from keras_initkit.callbacks.run_guard import state_variables

    x, y = data()
    x[4 * 32 + 1, 2] = np.nan
    out = {}
    for keep in ("host", "device"):
        with STRATEGY.scope():
            model = net(norm=False)
        states = {}

        class Recorder(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                step = int(self.model.optimizer.iterations.numpy())
                states[step] = [replicas(v)[0] for v in state_variables(self.model)]

        watcher = SignalMonitor(os.path.join(log_dir, keep), every_n_steps=3,
                                on_finding="restore", keep=keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0,
                      callbacks=[watcher, Recorder()])
        (restored,) = watcher.history["restores"]
        kept = states[restored["restored_step"]]
        out[keep] = {"restore": restored,
                     "equal_to_kept": all(np.array_equal(r, k) for v, k in zip(
                         state_variables(model), kept) for r in replicas(v)),
                     "finite": all(np.all(np.isfinite(r)) for v in state_variables(model)
                                   for r in replicas(v)),
                     "replicas": replica_report(model)}
    return out


def lsuv_and_reinitialize():
    x, _ = data()
    out = {}
    model, single = twins(norm=False)
    with STRATEGY.scope():
        report = keras_initkit.lsuv(model, x, seed=3)
    keras_initkit.lsuv(single, x, seed=3)
    out["lsuv"] = {"variances": [row["variance"] for row in report],
                   "replicas": replica_report(model), "max_diff": diff(model, single)}
    with warnings.catch_warnings(record=True) as caught:  # one worker: seed=None is fine
        warnings.simplefilter("always")
        keras_initkit.lsuv(model, x)
    out["lsuv"]["unseeded_warnings"] = [str(w.message) for w in caught
                                        if "lsuv" in str(w.message)]

    model, single = twins(norm=False)
    callback = LSUVInit(x[:128], seed=3)
    model.fit(x, data()[1], batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    out["lsuv_init"] = {"converged": [row["converged"] for row in callback.report],
                        "replicas": replica_report(model)}

    model, single = twins()
    with STRATEGY.scope():
        keras_initkit.reinitialize(model, "auto", seed=5)
    keras_initkit.reinitialize(single, "auto", seed=5)
    out["reinitialize"] = {"replicas": replica_report(model), "max_diff": diff(model, single)}
    return out


if __name__ == "__main__":
    out_path, log_dir = sys.argv[1], sys.argv[2]
    results = {"replicas_in_sync": STRATEGY.num_replicas_in_sync,
               "initializers": initializers(), "diagnose": diagnoses(),
               "gradients": gradients(), "monitor": monitor(log_dir),
               "model_init": lsuv_and_reinitialize(), "restore": restore(log_dir)}
    with open(out_path, "w") as f:
        json.dump(results, f)
