"""Run as a script under KERAS_BACKEND=jax/torch (tests/diagnostics/test_probe_backends.py):
probes three small models at the weights in `argv[1]`, diagnoses one, fits one under
LSUVInit and a SignalMonitor logging to `argv[3]`, runs `lsuv` and `reinitialize`; writes what
it found to `argv[2]`. Imported under
TensorFlow, it gives the same in-process."""
import json
import sys

import keras
import numpy as np

L = keras.layers


def models():
    """name -> (model, x, y): an MLP, a residual CNN with BatchNormalization, a token model
    with MultiHeadAttention; batches drawn by NumPy, the same on every backend."""
    rng = np.random.default_rng(0)
    # Named layers: paths that do not depend on how many layers the process made before.
    mlp = keras.Sequential([keras.Input((16,)), L.Dense(32, activation="relu", name="relu"),
                            L.Dense(32, activation="tanh", name="tanh"),
                            L.Dense(4, name="out")], name="mlp")
    image = keras.Input((8, 8, 3))
    h = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="conv")(image))
    h = L.ReLU(name="relu")(h)
    h = L.Add(name="sum")([h, L.Conv2D(8, 1, name="branch")(h)])
    h = L.GlobalAveragePooling2D(name="pool")(h)
    cnn = keras.Model(image, L.Dense(3, name="out")(h), name="cnn")
    tokens = keras.Input((6,), dtype="int32")
    e = L.Embedding(20, 16, name="embed")(tokens)
    a = L.Add(name="sum")([e, L.MultiHeadAttention(2, 8, name="mha")(e, e)])
    a = L.GlobalAveragePooling1D(name="pool")(L.LayerNormalization(name="norm")(a))
    attention = keras.Model(tokens, L.Dense(5, name="out")(a), name="attention")
    return {
        "mlp": (mlp, rng.normal(size=(8, 16)), rng.normal(size=(8, 4))),
        "cnn": (cnn, rng.normal(size=(4, 8, 8, 3)), rng.normal(size=(4, 3))),
        "attention": (attention, rng.integers(0, 20, size=(4, 6)), rng.normal(size=(4, 5))),
    }


def statistics(weights_file, save=False):
    """Every statistic of every probe: `{model/with_y: {"rows": [[path, stats]], "loss"}}`."""
    from keras_initkit.diagnostics import Probe

    keras.utils.set_random_seed(1)
    out, arrays = {}, {} if save else dict(np.load(weights_file))
    for name, (model, x, y) in models().items():
        if save:
            arrays.update({f"{name}/{i}": keras.ops.convert_to_numpy(w)
                           for i, w in enumerate(model.weights)})
        else:
            model.set_weights([arrays[f"{name}/{i}"] for i in range(len(model.weights))])
        model.compile(loss="mse")
        x = x.astype("int32" if name == "attention" else "float32")
        for with_y in (False, True):
            result = Probe(model)(x, y.astype("float32") if with_y else None)
            out[f"{name}/{with_y}"] = {
                "rows": [[r.path, r.stats] for r in result.activations + result.weights],
                "loss": result.loss}
    if save:
        np.savez(weights_file, **arrays)
    return out


def monitored_fit(weights_file, log_dir):
    """A SignalMonitor fit of the MLP at the saved weights (histograms, images, findings):
    `{tag: (plugin, steps)}` of what it wrote, read with TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from keras_initkit.callbacks import LSUVInit, SignalMonitor

    model, x, _ = models()["mlp"]
    arrays = np.load(weights_file)
    model.set_weights([arrays[f"mlp/{i}"] for i in range(len(model.weights))])
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    labels = np.arange(len(x)) % 4
    x = x.astype("float32")
    # LSUVInit first (without its random orthonormal start, which each backend draws its own
    # way), so the monitor sees the weights it set: to variance 25, where the tanh saturates
    # (a finding, written as text).
    lsuv = LSUVInit(x, target_var=25.0, tol=1.0, orthonormal=False)
    monitor = SignalMonitor(log_dir, every_n_steps=2, histograms=True, images=True)
    model.fit(x, labels, batch_size=16, epochs=1, shuffle=False, verbose=0,
              callbacks=[lsuv, monitor])
    events = EventAccumulator(log_dir, size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [events.SummaryMetadata(tag).plugin_data.plugin_name,
                  [event.step for event in events.Tensors(tag)]]
            for tag in events.Tags()["tensors"]}


def initialized(weights_file):
    """`lsuv` (kernels scaled, not drawn) of the CNN at the saved weights, and the He variance
    ratio of every kernel `reinitialize` draws (each backend draws its own numbers)."""
    import keras_initkit

    model, x, _ = models()["cnn"]
    arrays = np.load(weights_file)
    model.set_weights([arrays[f"cnn/{i}"] for i in range(len(model.weights))])
    keras_initkit.lsuv(model, x.astype("float32"), orthonormal=False)
    scaled = [keras.ops.convert_to_numpy(w).tolist() for w in model.weights]
    keras_initkit.reinitialize(model, "kit_he", seed=3)
    kernels = [keras.ops.convert_to_numpy(w) for w in model.weights if len(w.shape) > 1]
    return scaled, [[float(k.var() * np.prod(k.shape[:-1]) / 2), k.size] for k in kernels]


def refusals():
    """What a stateless backend's probe refuses, by name: the in-graph hook."""
    from keras_initkit.diagnostics import Probe

    try:
        Probe(models()["mlp"][0], in_graph_hook=print)
    except ValueError as error:
        return str(error)
    return None


def diagnosis():
    """`diagnose` of a deep, small-normal MLP ending in a zero kernel (judged after a step)."""
    import keras_initkit

    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((16,))] + [
        L.Dense(32, activation="relu", name=f"relu_{i}") for i in range(8)] + [
        L.Dense(4, kernel_initializer="zeros", name="head")], name="deep")
    model.set_weights([rng.normal(scale=0.01, size=w.shape) if i < 16 else np.zeros(w.shape)
                       for i, w in enumerate(model.weights)])
    report = keras_initkit.diagnose(model, rng.normal(size=(32, 16)))
    return [[f.kind, f.layer] for f in report.findings], bool(report.note)


def command_line(folder):
    """`initkit diagnose` of a saved model: its exit code (1: an error found) and picture."""
    import os

    from keras_initkit import cli

    model = keras.Sequential([keras.Input((16,))] + [
        L.Dense(16, activation="relu", kernel_initializer=keras.initializers.RandomNormal(
            stddev=0.01)) for _ in range(6)])
    model.save(os.path.join(folder, "small.keras"))
    code = cli.main(["diagnose", os.path.join(folder, "small.keras"), "--out", folder])
    return code, os.path.isfile(os.path.join(folder, "diagnosis.png"))


if __name__ == "__main__":
    with open(sys.argv[2], "w") as f:
        json.dump({"statistics": statistics(sys.argv[1]), "refusal": refusals(),
                   "diagnosis": diagnosis(), "events": monitored_fit(sys.argv[1], sys.argv[3]),
                   "initialized": initialized(sys.argv[1]),
                   "command_line": command_line(sys.argv[3])},
                  f)
