"""A run that diverges, with and without SignalMonitor(on_finding="restore").

    python examples/guard_a_diverging_run.py [--quick] [--out guard_example]

A 6-layer He/ReLU MLP on the bundled digits, SGD at a learning rate of 3.0 with momentum 0.9:
the loss passes 1e2 by step 3 and every weight is NaN a few steps later. Three runs from the
same initial weights:

- `on_finding="stop"`: the monitor finds the NaN at its next probe and stops, too late: the
  weights it leaves are NaN, the run is lost.
- `on_finding="restore"`: the per-batch loss check sees the spike at once; the weights and
  the optimizer's momenta of the last healthy probe are put back and training stops.
- `on_finding="restore", after_restore="lower_lr", lr_factor=0.01`: the same, then training
  goes on at a hundredth of the learning rate, to a finite, decreasing loss.

Writes `<out>/guard.png` (the loss per step of the three runs, and the first kernel's norm).
"""
import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from sklearn.datasets import load_digits

from keras_initkit.callbacks import SignalMonitor

L = keras.layers
LEARNING_RATE = float(os.environ.get("LR", 3.0))
RUNS = {"on_finding='stop' (the run is lost)": dict(on_finding="stop"),
        "on_finding='restore' (stops on the last healthy weights)": dict(on_finding="restore"),
        "on_finding='restore', after_restore='lower_lr', lr_factor=0.01": dict(
            on_finding="restore", after_restore="lower_lr", lr_factor=0.01)}


def model():
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.Input((64,))] + [L.Dense(64, activation="relu", kernel_initializer="he_normal",
                                        name=f"dense_{i}") for i in range(5)]
        + [L.Dense(10, name="head")], name="mlp")
    net.compile(keras.optimizers.SGD(LEARNING_RATE, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net


class Trace(keras.callbacks.Callback):
    """Per step: the batch's loss (recomputed on the weights before the step) and the first
    kernel's norm, whatever the callbacks before it did."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.loss, self.norm = x, y, [], []

    def on_train_batch_begin(self, batch, logs=None):
        start = batch * 64
        logits = self.model(self.x[start:start + 64])
        loss = keras.losses.sparse_categorical_crossentropy(self.y[start:start + 64], logits,
                                                            from_logits=True)
        self.loss.append(float(np.mean(keras.ops.convert_to_numpy(loss))))
        self.norm.append(float(np.linalg.norm(self.model.layers[0].kernel.numpy())))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs instead of 4")
    parser.add_argument("--out", default="guard_example")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target.astype("int32")
    traces = {}
    for name, options in RUNS.items():
        net, trace = model(), Trace(x, y)
        monitor = SignalMonitor(os.path.join(args.out, "logs", options.get(
            "after_restore", options["on_finding"])), every_n_steps=5, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the monitor's warnings, printed below instead
            net.fit(x, y, batch_size=64, epochs=2 if args.quick else 4, shuffle=False,
                    verbose=0, callbacks=[monitor, trace])
        finite = all(np.all(np.isfinite(w)) for w in net.get_weights())
        steps = int(net.optimizer.iterations.numpy())
        restores = monitor.history["restores"]
        print(f"{name}: {steps} steps, weights finite: {finite}" + "".join(
            f"\n    step {r['step']}: {r['reason']}; restored step {r['restored_step']}, "
            f"{r['action']}" for r in restores))
        trace.restored = [r["step"] for r in restores]
        traces[name] = trace
        if options.get("after_restore") == "lower_lr":
            loss = [v for v in trace.loss if np.isfinite(v)]
            print(f"Guarded run: finite weights: {finite}, loss {loss[0]:.3f} at the start, "
                  f"{np.mean(loss[-10:]):.3f} over its last 10 steps")
    picture(traces, os.path.join(args.out, "guard.png"))
    print(f"wrote {os.path.join(args.out, 'guard.png')}")


def picture(traces, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for (name, trace), style in zip(traces.items(), ("-", "--", "-")):
        steps = np.arange(len(trace.loss))
        top.plot(steps, np.where(np.isfinite(trace.loss), trace.loss, np.nan), style,
                 label=name)
        bottom.plot(steps, np.where(np.isfinite(trace.norm), trace.norm, np.nan), style)
        lost = np.flatnonzero(~np.isfinite(trace.loss))
        if lost.size:
            top.axvline(lost[0], color="grey", linestyle=":")
            top.annotate(f"NaN from step {lost[0]}", (lost[0], 0.9), xytext=(4, 0),
                         textcoords="offset points", xycoords=("data", "axes fraction"),
                         color="grey")
        for step in trace.restored:
            top.plot(step, trace.loss[step - 1], "kx", markersize=9)
    top.plot([], [], "kx", label="restored here")
    top.set_yscale("log")
    top.set_ylabel("batch loss (log)")
    top.set_title(f"SGD({LEARNING_RATE:g}, momentum=0.9) on the digits, 6-layer He/ReLU MLP")
    top.legend(fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("first kernel's norm (log)")
    bottom.set_xlabel("training step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
