"""LSUV initialization of a ResNet50, with the diagnosis before and after.

Layer-sequential unit-variance initialization (Mishkin & Matas 2016) sets every
convolution and Dense kernel to an orthonormal matrix, then, in depth order,
rescales each one until its output variance on a batch of data is 1.
`keras_initkit.lsuv` does it in a single forward pass: each layer is
re-evaluated alone on the input it was handed, so the cost is one pass plus
one layer call per rescaling. This example runs it on an untrained
`keras.applications.ResNet50(weights=None)` and prints the per-layer report,
the number of layer evaluations and the seconds taken, and what
`keras_initkit.diagnose` says before and after.

The batch is random crops of the two photographs that ship with scikit-learn
(`load_sample_images`); nothing is downloaded.

    python examples/lsuv_resnet.py [--arch ResNet50] [--size 64] [--batch 64]
                                   [--out DIR] [--quick]

Writes lsuv_report.json, diagnosis_before.png and diagnosis_after.png to --out
(default example_output/lsuv_resnet). About 45 s on a 2-core CPU, most of it
the first diagnose() tracing ResNet50 (LSUV itself takes about 3 s); --quick
runs MobileNet on 32x32 crops instead (about 20 s).
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from sklearn.datasets import load_sample_images

import keras_initkit

ARCHS = ("ResNet50", "MobileNet", "MobileNetV2")


def photo_batch(n, size, seed):
    """`n` random `size`x`size` crops of scikit-learn's two sample photos, standardized
    per channel (what a data pipeline would feed the network)."""
    images = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        image = images[i % len(images)]
        r = rng.integers(0, image.shape[0] - size + 1)
        c = rng.integers(0, image.shape[1] - size + 1)
        crops.append(image[r:r + size, c:c + size])
    x = np.stack(crops).astype("float32")
    return (x - x.mean((0, 1, 2))) / x.std((0, 1, 2))


def conv_output_std(report):
    """Std of every convolution's output in a diagnosis (the classifier's softmax left out)."""
    return [row["std"] for row in report.layers if "Conv" in row["type"]]


def summarize(title, report):
    stds = conv_output_std(report)
    print(f"{title}: {'healthy' if report.healthy else f'{len(report.findings)} finding(s)'}; "
          f"conv output std from {min(stds):.3g} to {max(stds):.3g} "
          f"over {len(stds)} layers")
    for finding in report.findings:
        print(f"  - [{finding.kind}/{finding.signal}] {finding.message}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, default=None,
                        help="keras.applications model (default ResNet50; MobileNet with --quick)")
    parser.add_argument("--size", type=int, default=None,
                        help="input height and width (default 64; 32 with --quick)")
    parser.add_argument("--batch", type=int, default=None,
                        help="LSUV batch size (default 64; 16 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("example_output", "lsuv_resnet"),
                        help="folder for the JSON report and the PNG plots")
    parser.add_argument("--quick", action="store_true",
                        help="MobileNet, 32x32, batch 16: a smoke run")
    args = parser.parse_args(argv)
    arch = args.arch or ("MobileNet" if args.quick else "ResNet50")
    size = args.size or (32 if args.quick else 64)
    batch = args.batch or (16 if args.quick else 64)
    os.makedirs(args.out, exist_ok=True)

    keras.utils.set_random_seed(args.seed)
    model = getattr(keras.applications, arch)(weights=None, input_shape=(size, size, 3),
                                              classes=10)
    x = photo_batch(batch, size, args.seed)
    print(f"{arch}(weights=None), input {size}x{size}x3, {len(model.layers)} layers; "
          f"LSUV batch: {batch} photo crops.\n")

    # diagnose() runs in training mode, so BatchNormalization hides most of a bad scale
    # from the activations; the gradients still show it.
    before = keras_initkit.diagnose(model, x)
    summarize("diagnose() before, Keras' default initializers", before)
    before.plot().savefig(os.path.join(args.out, "diagnosis_before.png"), dpi=100)

    report = keras_initkit.lsuv(model, x, seed=args.seed)
    print("\nlsuv(model, x) per layer:")
    print(report.table())
    # The paper's loop runs the whole model once per iteration of every layer.
    paper_passes = sum(row["iterations"] + 1 for row in report)
    print(f"\n{len(report)} layers scaled with {report.layer_evaluations} layer evaluations "
          f"and {report.forward_passes} forward pass in {report.seconds:.2f} s "
          f"(the paper's loop: {paper_passes} passes, each up to the layer it scales).")
    with open(os.path.join(args.out, "lsuv_report.json"), "w") as f:
        json.dump(report.to_dict(), f, indent=1)
    # Every Dense and convolution layer must have reached unit variance.
    missed = [row["layer"] for row in report if not row["converged"]]
    assert not missed, f"LSUV did not converge at {missed}"
    assert all(abs(row["variance"] - 1.0) < 0.1 for row in report)
    linear = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    assert {row["layer"] for row in report} == \
        {layer.name for layer in model.layers if isinstance(layer, linear)}

    print()
    after = keras_initkit.diagnose(model, x)
    summarize("diagnose() after LSUV", after)
    after.plot().savefig(os.path.join(args.out, "diagnosis_after.png"), dpi=100)
    assert after.healthy, [f.message for f in after.findings]
    print(f"\nWrote lsuv_report.json and the two diagnosis plots to {args.out}")


if __name__ == "__main__":
    main()
