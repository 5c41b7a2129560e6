"""Transfer learning as initialization: start a new task's model from a trained one.

Trains a small MLP on scikit-learn's bundled 8x8 digits (10 classes; nothing is
downloaded) and saves it. A new model for another task, "is the digit below
5?", has the same body and a 2-unit head under the same name.
`keras_initkit.transfer_weights("source.keras", new_model, match="name")`
copies every layer whose name and shapes agree, skips the head (its shapes
differ: the report names both) and leaves it to its initializer. The example
checks that the body is identical to the source and the head untouched, then
fine-tunes every layer on only a few labelled examples of the new task, and
trains the same model from scratch on them for reference. The two end close
here: the body already separates the digits, but which ones count as "below 5"
is learnt from the few labels either way.

    python examples/transfer_learning.py [--epochs 15] [--labels 100]
                                         [--finetune-epochs 20] [--out DIR] [--quick]

Writes digits_source.keras to --out (default example_output/transfer_learning).
About 10 s on a 2-core CPU, half of it TensorFlow's start-up; --quick trains
for fewer epochs.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_initkit

BODY = ("hidden_1", "hidden_2")


def load_data(seed):
    """Digits scaled to [0, 1], shuffled, split 80/20."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 16.0).astype("float32"), y[order].astype("int32")
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def build(classes, name):
    """The shared body, then a head for `classes` classes. The head has the same name in
    every task, so name matching reaches it and the report shows why it was skipped."""
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", kernel_initializer="kit_he", name=BODY[0]),
        keras.layers.Dense(64, activation="relu", kernel_initializer="kit_he", name=BODY[1]),
        keras.layers.Dense(classes, kernel_initializer="kit_glorot", name="head"),
    ], name=name)


def compile_model(model, learning_rate=1e-3):
    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15,
                        help="epochs of the 10-class source training (default 15)")
    parser.add_argument("--labels", type=int, default=100,
                        help="labelled examples of the new task to fine-tune on (default 100)")
    parser.add_argument("--finetune-epochs", type=int, default=20,
                        help="fine-tuning epochs (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("example_output", "transfer_learning"),
                        help="folder for the saved source model")
    parser.add_argument("--quick", action="store_true", help="fewer epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.finetune_epochs = 5, 10
    os.makedirs(args.out, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = load_data(args.seed)

    # 1. The source task: all ten digits.
    keras.utils.set_random_seed(args.seed)
    source = compile_model(build(10, "digits10"))
    source.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    _, source_acc = source.evaluate(x_test, y_test, verbose=0)
    path = os.path.join(args.out, "digits_source.keras")
    source.save(path)
    print(f"Source model, 10 digits: test accuracy {source_acc:.3f}; saved to {path}\n")

    # 2. The new task, digit < 5, with a 2-class head; transfer from the file.
    y_train2, y_test2 = (y_train < 5).astype("int32"), (y_test < 5).astype("int32")
    keras.utils.set_random_seed(args.seed + 1)
    model = build(2, "below5")
    fresh_head = [w.copy() for w in model.get_layer("head").get_weights()]
    report = keras_initkit.transfer_weights(path, model, match="name")
    print(report.table())

    # The body is the source's, bit for bit; the head kept its own initial draw.
    assert [t for t, _ in report.copied] == list(BODY), report.copied
    assert report.initialized == ["head"], report.skipped
    for name in BODY:
        for got, want in zip(model.get_layer(name).get_weights(),
                             source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(model.get_layer("head").get_weights(), fresh_head):
        np.testing.assert_array_equal(got, want)
    print(f"\nBody layers {', '.join(BODY)} identical to the source; head "
          f"{model.get_layer('head').kernel.shape} left to its initializer.\n")

    # 3. Fine-tune on a few labels, next to the same model from scratch.
    few = slice(0, args.labels)
    print(f"Fine-tuning on {args.labels} labelled examples for {args.finetune_epochs} epochs:")
    results = {}
    keras.utils.set_random_seed(args.seed + 1)
    scratch = build(2, "scratch")  # same seed as `model` before the transfer: same head
    np.testing.assert_array_equal(scratch.get_layer("head").get_weights()[0], fresh_head[0])
    for label, net in (("from scratch", scratch), ("transferred", model)):
        keras.utils.set_random_seed(args.seed)
        # 3e-3: few labels give few steps (4 per epoch at 100 labels).
        compile_model(net, 3e-3).fit(x_train[few], y_train2[few], epochs=args.finetune_epochs,
                                     batch_size=32, verbose=0)
        results[label] = net.evaluate(x_test, y_test2, verbose=0)[1]
        print(f"  {label:<13} test accuracy {results[label]:.3f}")
    print(f"Transferred minus scratch: {results['transferred'] - results['from scratch']:+.3f}")
    # Half the test digits are below 5: a transfer that broke the body would sit near 0.5.
    assert results["transferred"] > 0.75, results


if __name__ == "__main__":
    main()
