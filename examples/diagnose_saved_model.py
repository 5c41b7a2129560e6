"""Diagnose a saved model at initialization, then fix it with reinitialize("auto").

Builds a deep ReLU MLP whose kernels are drawn from N(0, 0.05^2), a scale far
too small for its depth (He would be N(0, 2/128), std 0.125), saves it to a
`.keras` file and loads it back, as you would a model handed to you.
`keras_initkit.diagnose` runs one batch of real data (scikit-learn's bundled
8x8 digits, nothing is downloaded) through it and reports, per layer, the
activation scale and the backward signal, with findings that say what is wrong,
how bad (an error: it will not train; a warning: it trains, worse) and what to
use instead. The plot of both goes to a PNG. Then
`keras_initkit.reinitialize(model, "auto")` re-draws every layer
with the scheme its activation needs, the diagnosis comes back healthy, and a
short training run shows the difference.

    python examples/diagnose_saved_model.py [--depth 20] [--width 128] [--epochs 3]
                                            [--out DIR] [--quick]

Writes diagnosis_before.png and diagnosis_after.png to --out (default
example_output/diagnose_saved_model). About 20 s on a 2-core CPU, most of it
TensorFlow's start-up and the first diagnose() tracing the model; --quick uses a
shallower, narrower model and two epochs (about 12 s).
"""
import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_initkit  # registers the kit_* aliases: needed to load the model


def load_data(seed):
    """Digits, shuffled, split 80/20, standardized per pixel with the training statistics."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order].astype("int32")
    split = int(0.8 * len(x))
    mean, std = x[:split].mean(0), x[:split].std(0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).astype("float32")  # corner pixels are 0
    return (x[:split], y[:split]), (x[split:], y[split:])


def build_bad_model(depth, width, stddev, seed):
    """A deep ReLU MLP with N(0, stddev^2) kernels: each layer scales the signal by about
    stddev * sqrt(width / 2), 0.4 for the defaults."""
    keras.utils.set_random_seed(seed)
    small = keras_initkit.initializers.RandomNormal(stddev=stddev)
    layers = [keras.Input((64,))]
    for i in range(depth):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"dense_{i + 1}",
                                         kernel_initializer=small))
    layers.append(keras.layers.Dense(10, name="logits"))
    return keras.Sequential(layers, name="deep_mlp")


def val_accuracy(model, train, val, epochs, seed):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(*train, validation_data=val, epochs=epochs, batch_size=64, verbose=0)
    return history.history["val_accuracy"][-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20, help="hidden layers (default 20)")
    parser.add_argument("--width", type=int, default=128, help="units per layer (default 128)")
    parser.add_argument("--stddev", type=float, default=0.05,
                        help="std of the bad initial kernels (default 0.05)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--batch", type=int, default=256, help="probe batch size (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("example_output", "diagnose_saved_model"),
                        help="folder for the PNG plots")
    parser.add_argument("--quick", action="store_true",
                        help="10 layers of 64 units, 2 epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.width, args.epochs = 10, 64, 2
    os.makedirs(args.out, exist_ok=True)

    train, val = load_data(args.seed)
    x_probe = train[0][:args.batch]

    # Save and reload: the diagnosis works on whatever model you are handed.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "deep_mlp.keras")
        original = build_bad_model(args.depth, args.width, args.stddev, args.seed)
        original.save(path)
        model = keras.saving.load_model(path)
        for a, b in zip(original.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
        # Reloaded separately: the untouched bad model, to train as the baseline below.
        baseline = keras.saving.load_model(path)
    init = model.layers[0].kernel_initializer  # restored from the file's config
    print(f"Loaded a {args.depth}-layer ReLU MLP (width {args.width}) whose kernels are "
          f"{type(init).__name__}(stddev={init.get_config()['stddev']:g}).\n")

    report = keras_initkit.diagnose(model, x_probe)
    print("diagnose() before:")
    print(report.table())
    before_png = os.path.join(args.out, "diagnosis_before.png")
    report.plot().savefig(before_png, dpi=100)
    # The network must be caught: its signal shrinks 0.4x per layer, 1e-8 over 20 (an error:
    # it does not train), 3e-6 over the 10 layers of --quick (a warning: it trains, slowly).
    assert "vanishing" in {f.kind for f in report.findings}
    assert report.healthy == (args.depth < 15), report.findings
    print("\nThe findings as data (for scripts and CI gates):")
    for f in report.findings:
        print(f"  kind={f.kind!r} signal={f.signal!r} severity={f.severity!r} "
              f"layer={f.layer!r} value={f.value:.3g} threshold={f.threshold:g}")

    rows = keras_initkit.reinitialize(model, "auto", seed=args.seed)
    schemes = sorted({row["scheme"] for row in rows if row["weight"] == "kernel"})
    print(f"\nreinitialize(model, 'auto') re-drew {len(rows)} weights; kernel schemes: "
          f"{'; '.join(schemes)}")

    fixed = keras_initkit.diagnose(model, x_probe)
    print("\ndiagnose() after:")
    print(fixed.table())
    after_png = os.path.join(args.out, "diagnosis_after.png")
    fixed.plot().savefig(after_png, dpi=100)
    assert fixed.healthy and not fixed.findings, [f.message for f in fixed.findings]
    print(f"\nPlots: {before_png}, {after_png}")

    # The diagnosis is about trainability, so train both for the same few epochs.
    bad_acc = val_accuracy(baseline, train, val, args.epochs, args.seed)
    fixed_acc = val_accuracy(model, train, val, args.epochs, args.seed)
    print(f"\nValidation accuracy after {args.epochs} epoch(s): as loaded {bad_acc:.3f}, "
          f"after reinitialize {fixed_acc:.3f}")
    assert fixed_acc > bad_acc + 0.2, (bad_acc, fixed_acc)
    print(f"Healthy after reinitialize: {fixed.healthy}")


if __name__ == "__main__":
    main()
