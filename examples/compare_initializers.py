"""The controlled experiment from Python: one deep MLP, the bundled digits, only the
initializer varies.

`initkit compare` runs the same thing from the command line. This script picks
four schemes, trains each for the same epochs with the same seed, prints the
table, and reads back what the experiment kept: the diagnosis at
initialization and the per-epoch history of each scheme.

    python examples/compare_initializers.py            # about a minute on 2 CPU cores
    python examples/compare_initializers.py --quick    # a few seconds: smaller, 2 epochs
"""
import argparse

from keras_initkit.experiment import compare


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run, for smoke tests")
    parser.add_argument("--out", default="compare_initializers_out")
    args = parser.parse_args()
    depth, epochs, seeds = (4, 2, 1) if args.quick else (20, 15, 3)

    # Glorot is too small for ReLU at depth 20, He and LSUV keep the signal level;
    # RandomNormal(stddev=0.05) is Keras' historical default.
    result = compare(["random_normal", "glorot", "he", "lsuv"], depth=depth, width=64,
                     activation="relu", epochs=epochs, seed=0, seeds=seeds, out=args.out,
                     verbose=0)
    print(result.table())

    for scheme, report in result.diagnoses.items():
        hidden = [row for row in report.layers if row["type"] == "Dense"][:-1]  # not the head
        first, last = hidden[0]["std"], hidden[-1]["std"]
        print(f"{scheme:>14}: activation std {first:.3g} at the first layer, {last:.3g} at the "
              f"last hidden one; {len(report.findings)} finding(s) at initialization")
    best = max(result.rows, key=lambda row: row["val_accuracy"] or 0.0)
    print(f"best mean validation accuracy: {best['scheme']} ({best['val_accuracy']:.3f}); "
          "the others against it, paired over seeds: " + ", ".join(
              f"{row['scheme']} {row['vs_best'] or '- (one seed: no test)'}"
              for row in result.rows if row is not best))
    print(f"figures: {result.files['learning_curves']}, {result.files['signal_at_init']}")


if __name__ == "__main__":
    main()
