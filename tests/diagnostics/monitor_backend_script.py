"""SignalMonitor on the JAX or PyTorch backend (`KERAS_BACKEND`), in one process: the first
training batch as the probe batch, and a diverging run restored. Prints one JSON line.

    KERAS_BACKEND=jax python monitor_backend_script.py LOG_DIR
"""
import json
import sys
import warnings

import keras
import numpy as np

from keras_initkit.callbacks import SignalMonitor


def _small_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def first_batch(log_dir):
    """Per shuffle: the same weights as a fit without the monitor, the probe batch as the
    first batch taken, the probe steps, and the step-0 probe of the starting weights."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = rng.integers(0, 3, 96).astype("int32")
    out = {}
    for shuffle in (False, True):
        plain, monitored = _small_model(), _small_model()
        start = [np.linalg.norm(keras.ops.convert_to_numpy(w))
                 for w in monitored.trainable_weights]
        monitor = SignalMonitor(log_dir + str(shuffle), every_n_steps=2)
        keras.utils.set_random_seed(1)
        plain.fit(x, y, batch_size=16, epochs=1, shuffle=shuffle, verbose=0)
        keras.utils.set_random_seed(1)
        monitored.fit(x, y, batch_size=16, epochs=1, shuffle=shuffle, verbose=0,
                      callbacks=[monitor])
        probed = keras.ops.convert_to_numpy(monitor.x)
        norms = [monitor.history["weights"][w.path]["weight_norm"][0]
                 for w in monitored.trainable_weights]
        out[str(shuffle)] = {
            "same_weights": all(np.array_equal(keras.ops.convert_to_numpy(a),
                                               keras.ops.convert_to_numpy(b))
                                for a, b in zip(plain.weights, monitored.weights)),
            "head": bool(np.array_equal(probed, x[:16])),
            "rows_of_x": bool(all((probed[i] == x).all(1).any() for i in range(len(probed)))),
            "steps": monitor.history["step"],
            "step0_norms": bool(np.allclose(norms, start, rtol=1e-5)),
        }
    return out


def restore(log_dir):
    """The diverging He MLP at learning rate 3 with `on_finding="restore"`: what was done,
    and whether the final weights are the restored step's, bit for bit."""
    from test_run_guard import StateAtEachStep, digits, he_mlp, state

    x, y = digits()
    model, recorder = he_mlp(3.0), StateAtEachStep()
    monitor = SignalMonitor(log_dir, every_n_steps=5, on_finding="restore")
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0,
              callbacks=[monitor, recorder])
    (restored,) = monitor.history["restores"]
    kept = recorder.states[restored["restored_step"]]
    return {"action": restored["action"],
            "equal": all(np.array_equal(a, b) for a, b in zip(state(model), kept))}


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(json.dumps({"first_batch": first_batch(sys.argv[1] + "/first_batch"),
                          "restore": restore(sys.argv[1] + "/restore")}))
