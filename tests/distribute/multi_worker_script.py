"""One worker of a 2-worker MultiWorkerMirroredStrategy job (TF_CONFIG set by the test).

Usage: python multi_worker_script.py OUT.json LOG_DIR. Three fits in a row, each with a
SignalMonitor, on both workers; this writes what each worker saw. Phases:
  train: an unseeded reinitialize and lsuv (both warn), then fit with LSUVInit(seed=0); the
         monitor logs to LOG_DIR/shared (the same path on both).
  stop:  on_finding="stop"; only worker 1's probe batch saturates the tanh layer.
  raise: on_finding="raise"; the same.
Without the monitor's agreement, worker 1 alone would stop (or raise) in the last two, and
worker 0 would wait for it in the next step's all-reduce: the test's timeout catches that.
"""
import json
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow op

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.backend.tensorflow import trainer as tf_trainer  # noqa: E402

import keras_initkit  # noqa: E402
from keras_initkit.callbacks import FindingError, LSUVInit, SignalMonitor  # noqa: E402

L = keras.layers
TASK = STRATEGY.cluster_resolver.task_id


# Keras 3.15's fit() fails under MultiWorkerMirroredStrategy before the first step
# (keras-team/keras#20585, tensorflow/tensorflow#72388): it all-reduces a tuple of
# per-replica batches to build the model, and reduces scalar logs along axis 0. These two
# stand-ins do what was meant; nothing of keras_initkit depends on them.
def _symbolic_build(model):
    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for step in iterator:  # (step, iterator) before Keras 3.11, then (begin, end, it)
                data_batch = keras.tree.map_structure(
                    lambda v: STRATEGY.experimental_local_results(v)[0], next(step[-1]))
                break
        with STRATEGY.scope():
            model._symbolic_build(data_batch=data_batch)
    model._maybe_symbolic_build = build


_reduce_per_replica = tf_trainer.reduce_per_replica


def _reduce_logs(values, strategy, reduction="auto"):
    if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
        return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
    return _reduce_per_replica(values, strategy, reduction)


tf_trainer.reduce_per_replica = _reduce_logs


def data(n=128):
    rng = np.random.default_rng(0)  # the same arrays on both workers
    x = rng.normal(size=(n, 16)).astype("float32")
    return x, rng.integers(0, 3, n).astype("int32")


def model(seed):
    keras.utils.set_random_seed(seed)
    with STRATEGY.scope():
        net = keras.Sequential([keras.Input((16,)),
                                L.Dense(32, activation="tanh", kernel_initializer="kit_glorot"),
                                L.Dense(32, activation="relu", kernel_initializer="kit_he"),
                                L.Dense(3)])
        net.compile(keras.optimizers.SGD(0.1),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    _symbolic_build(net)
    return net


def iterations(net):
    return int(net.optimizer.iterations.numpy())


def train(log_dir):
    x, y = data()
    net = model(seed=1)
    with warnings.catch_warnings(record=True) as unseeded:  # LSUVInit re-draws them below
        warnings.simplefilter("always")
        keras_initkit.reinitialize(net)
        keras_initkit.lsuv(net, x[:64], max_iter=1)
    # images=True: only the chief draws; the other worker's pictures would need a writer.
    # The same probe batch on each worker (without it, each probes its own shard's first).
    monitor = SignalMonitor(os.path.join(log_dir, "shared"), probe_data=(x[:32], y[:32]),
                            every_n_steps=2, images=True, image_every_n_probes=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
                callbacks=[LSUVInit(x[:64], seed=0), monitor])
    return {"steps": monitor.history["step"], "iterations": iterations(net),
            "activations": monitor.history["activations"],
            "weights": [w.tolist() for w in net.get_weights()],
            "unseeded_lsuv_warned": any("lsuv" in str(w.message) and "seed=None" in
                                        str(w.message) for w in unseeded),
            "unseeded_reinitialize_warned": any(
                "reinitialize" in str(w.message) and "seed=None" in str(w.message)
                for w in unseeded),
            "monitor_warnings": [str(w.message) for w in caught
                                 if "SignalMonitor" in str(w.message)]}


def divergent(log_dir, on_finding):
    """Only worker 1's probe batch is 100 times too large: its tanh layer saturates."""
    x, y = data()
    net = model(seed=2)
    probe_x = x[:64] * (100.0 if TASK == 1 else 1.0)
    monitor = SignalMonitor(os.path.join(log_dir, f"{on_finding}_worker{TASK}"),
                            probe_data=(probe_x, y[:64]), every_n_steps=2,
                            on_finding=on_finding)
    out = {"error": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
                    callbacks=[monitor])
        except FindingError as error:
            out["error"] = {"message": str(error),
                            "kind": error.finding.kind if error.finding else None}
    out.update(iterations=iterations(net), steps=monitor.history["step"],
               findings=sorted({f.kind for _, f in monitor.history["findings"]}))
    return out


if __name__ == "__main__":
    out_path, log_dir = sys.argv[1], sys.argv[2]
    result = {"task": TASK, "pid": os.getpid(),
              "chief": STRATEGY.extended.should_save_summary,
              "replicas": STRATEGY.num_replicas_in_sync}
    result["train"] = train(log_dir)
    result["stop"] = divergent(log_dir, "stop")
    result["raise"] = divergent(log_dir, "raise")
    with open(out_path, "w") as f:
        json.dump(result, f)
