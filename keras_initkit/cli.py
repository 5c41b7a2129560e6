"""`initkit list | compare | diagnose | coord-check`, also `python -m keras_initkit ...`.

Exit codes: 0 done (and, for `diagnose`, no error: warnings alone pass
unless `--strict`); 1 `diagnose` found an error (or, with `--strict`, any
finding); 2 bad input (a missing or corrupt file, data that does not fit,
an unknown scheme, an unwritable folder), reported in one line.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: no C++ banner

SYNTHETIC_BATCH = 64  # samples of N(0, 1) when `diagnose` gets no data


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:  # bad input: one line, no traceback
        print(f"initkit {args.command}: error: {error}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(
        prog="initkit", description="Initializers and training-signal diagnostics for Keras.")
    commands = parser.add_subparsers(dest="command", metavar="{list,compare,diagnose,coord-check}")

    listing = commands.add_parser("list", help="every kit_* alias, its class and its formula")
    listing.set_defaults(run=_list)

    comp = commands.add_parser(
        "compare", help="train one base model once per initializer and compare",
        description="Keeps the base model, data, seed, optimizer and epochs fixed and varies "
                    "only the initializer. Without --data it trains on the bundled 8x8 digits.")
    comp.add_argument("--model", help="a saved model (.keras or .h5) re-initialized per scheme "
                                      "(default: a deep MLP, see --depth, --width, --activation)")
    comp.add_argument("--data", help=".npz with x_train, y_train and optional x_val, y_val "
                                     "(default: scikit-learn's bundled digits)")
    comp.add_argument("--schemes", default=None,
                      help="comma-separated: aliases with or without 'kit_', Keras names, "
                           "'lsuv', 'auto', recipes ('gpt2', 'fixup', ...), 'as_built' "
                           f"(default per --arch: {_arch_defaults()})")
    comp.add_argument("--arch", choices=("mlp", "cnn", "resmlp", "transformer"), default="mlp",
                      help="the base model: an MLP, a CNN on the digits as 8x8 images, a "
                           "residual MLP without normalization, or a GPT-style decoder on a "
                           "delayed-copy task (default: %(default)s)")
    comp.add_argument("--epochs", type=int, default=30,
                      help="epochs per run (default: %(default)s)")
    comp.add_argument("--depth", type=int, default=20,
                      help="hidden layers (or blocks) of the base model (default: %(default)s)")
    comp.add_argument("--depths", default=None,
                      help="a depth sweep instead of --depth, comma-separated (e.g. "
                           "5,10,20,30,50): every scheme at every depth, and depth_sweep.png")
    comp.add_argument("--width", type=int, default=64,
                      help="units per hidden layer (default: %(default)s)")
    comp.add_argument("--activation", default="relu",
                      help="of the hidden layers; the transformer has its own (default: "
                           "%(default)s)")
    comp.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    comp.add_argument("--learning-rate", type=float, default=1e-3,
                      help="Adam's, > 0 (default: %(default)s)")
    comp.add_argument("--target-accuracy", type=float, default=0.9,
                      help="report the first epoch whose validation accuracy reaches this, in "
                           "[0, 1] (default: %(default)s)")
    comp.add_argument("--seed", type=int, default=0, help="the first run's seed (default: "
                      "%(default)s)")
    comp.add_argument("--seeds", type=int, default=3,
                      help="runs per scheme (seeds --seed, --seed+1, ...): the table gives the "
                           "mean with its 95%% t-interval and a paired test against the best "
                           "(default: %(default)s; 1 is one run per scheme)")
    comp.add_argument("--jobs", type=int, default=None,
                      help="worker processes that train cells side by side (default: one per "
                           "CPU core, as many as the memory holds at 2 GiB each; 1: in this "
                           "process)")
    comp.add_argument("--out", default="initkit_compare", help="output folder")
    comp.add_argument("--quiet", action="store_true", help="print only the table")
    comp.set_defaults(run=_compare)

    diag = commands.add_parser(
        "diagnose", help="diagnose a saved model at its current weights; exit 1 if unhealthy",
        description="Runs keras_initkit.diagnose on one batch: the first --batch-size samples "
                    f"of --data, or, without data, {SYNTHETIC_BATCH} samples of N(0, 1) in the "
                    "model's input shape (seed 0). Prints the per-layer table and the findings, "
                    "writes the plot, and exits 1 when a finding is an error (the network "
                    "will not train as it stands); warnings alone exit 0 unless --strict.")
    diag.add_argument("model", help="a saved model (.keras or .h5)")
    diag.add_argument("--data", help=".npz with x_train (or x) and optional y_train (or y)")
    diag.add_argument("--batch-size", type=int, default=256)
    diag.add_argument("--out", default="initkit_diagnose", help="folder for diagnosis.png")
    diag.add_argument("--strict", action="store_true",
                      help="exit 1 on warnings too (it trains, worse), not only on errors")
    diag.set_defaults(run=_diagnose)

    coord = commands.add_parser(
        "coord-check", help="mup's coordinate check of an MLP on the bundled digits",
        description="Trains an MLP of --depth hidden ReLU layers at each of --widths for "
                    "--steps steps on one batch of the bundled digits (scikit-learn's "
                    "load_digits), recording the mean |activation| of every layer, and plots it "
                    "against width. Under µP (the default) the curves stay flat; --sp shows the "
                    "standard parametrization (Keras' defaults, plain Adam or SGD), where they "
                    "grow with width after the first step.")
    coord.add_argument("--widths", default="64,128,256,512,1024")
    coord.add_argument("--depth", type=int, default=3)
    coord.add_argument("--steps", type=int, default=3)
    coord.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    coord.add_argument("--learning-rate", type=float, default=1e-2)
    coord.add_argument("--sp", action="store_true", help="the standard parametrization instead")
    coord.add_argument("--seed", type=int, default=0)
    coord.add_argument("--out", default="initkit_coord_check", help="output folder")
    coord.set_defaults(run=_coord_check)
    return parser


def _arch_defaults():
    from .experiment import ARCH_SCHEMES
    return "; ".join(f"{arch}: {','.join(schemes)}" for arch, schemes in ARCH_SCHEMES.items())


def _list(args):
    from .registry import list_initializers

    infos = list_initializers()
    width = max(len(i.alias) for i in infos) + 2
    class_width = max(len(i.cls.__name__) for i in infos) + 2
    print(f"{'alias':<{width}}{'class':<{class_width}}formula")
    for info in infos:
        print(f"{info.alias:<{width}}{info.cls.__name__:<{class_width}}{info.formula}")
    return 0


def _compare(args):
    from .experiment import compare

    schemes = None if args.schemes is None else \
        [s.strip() for s in args.schemes.split(",") if s.strip()]
    result = compare(schemes, data=args.data, model=args.model, arch=args.arch,
                     depth=args.depth, depths=_integers("--depths", args.depths),
                     width=args.width, activation=args.activation, epochs=args.epochs,
                     batch_size=args.batch_size, learning_rate=args.learning_rate,
                     seed=args.seed, seeds=args.seeds, jobs=args.jobs, out=args.out,
                     target_accuracy=args.target_accuracy, verbose=0 if args.quiet else 1)
    print()
    print(result.table())
    if not args.quiet:
        for key, path in result.files.items():
            if key != "logs":
                print(f"wrote {path}")
        print(f"\nOpen the training logs: tensorboard --logdir {result.files['logs']}")
    return 0


def _integers(option, text):
    """`"5,10,20"` -> `[5, 10, 20]`; None stays None."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers such as 5,10,20; received "
                         f"{text!r}.") from None


def _diagnose(args):
    from .diagnostics import diagnose
    from .experiment import check_out, load_model, loss_for

    model = load_model(args.model)
    if len(model.inputs) != 1:
        raise ValueError(f"The model has {len(model.inputs)} inputs; diagnose from the command "
                         "line takes a model with one (use keras_initkit.diagnose in Python).")
    if isinstance(args.batch_size, bool) or args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; received {args.batch_size}.")
    shape = tuple(model.inputs[0].shape[1:])
    x, y = _diagnose_batch(args.data, args.batch_size, shape, model.inputs[0].dtype)
    check_out(args.out)
    loss = None if y is None else loss_for(model, y)
    try:
        report = diagnose(model, x, y, loss=loss)
    except ValueError as error:
        raise ValueError(f"The data does not fit the model: {error}") from None
    print(report.table())
    path = os.path.join(args.out, "diagnosis.png")
    report.plot().savefig(path, dpi=110)
    print(f"\nwrote {path}")
    return 1 if not report.healthy or (args.strict and report.findings) else 0


def _diagnose_batch(path, size, shape, dtype):
    """`(x, y)` from an .npz (`x_train`/`x`, `y_train`/`y`), in the model's input dtype, or a
    synthetic N(0, 1) batch."""
    import numpy as np

    integers = np.issubdtype(np.dtype(dtype), np.integer)
    if path is None:
        if integers:  # noise cast to ids would be a batch of a few repeated tokens
            raise ValueError(f"The model takes integer inputs ({dtype}: token ids, indices, "
                             "pixels); pass --data with a batch of them.")
        if any(d is None for d in shape):
            raise ValueError(f"The model's input shape {shape} has an unknown size; pass "
                             "--data with a batch.")
        rng = np.random.default_rng(0)
        return rng.standard_normal((SYNTHETIC_BATCH, *shape)).astype("float32"), None
    from .experiment import check_samples, read_npz

    arrays = read_npz(path)
    x = arrays.get("x_train", arrays.get("x"))
    if x is None:
        raise ValueError(f"Data file {path!r} holds no x_train (or x); found {sorted(arrays)}.")
    y = arrays.get("y_train", arrays.get("y"))
    check_samples(x, shape)
    x = x[:size]
    if integers:
        info = np.iinfo(np.dtype(dtype))
        whole = np.issubdtype(x.dtype, np.integer) or bool(np.all(np.mod(x, 1) == 0))
        if not whole or x.min() < info.min or x.max() > info.max:
            raise ValueError(f"The model takes {dtype} inputs; {path!r} holds {x.dtype} values "
                             f"from {x.min()} to {x.max()}, which {dtype} does not hold as they "
                             "are.")
        return x.astype(dtype), None if y is None else y[:size]
    return x.astype("float32"), None if y is None else y[:size]


def _coord_check(args):
    import json

    from .experiment import check_out, load_data
    from .model_init import mup

    widths = _integers("--widths", args.widths)
    for name in ("depth", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1; received {getattr(args, name)}.")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning-rate must be > 0; received {args.learning_rate}.")
    check_out(args.out)
    import keras

    x_train, y_train, _, _ = load_data(None, seed=args.seed)
    x, y = x_train[:256], y_train[:256]
    mu = not args.sp

    def build(width):
        keras.utils.set_random_seed(args.seed)
        model = _coord_mlp(width, args.depth, x.shape[1], mu)
        if mu:
            mup.set_base_shapes(model, _coord_mlp(min(widths), args.depth, x.shape[1], mu),
                                seed=args.seed)
        return model

    optimizers = {"adam": (mup.MuAdam, keras.optimizers.Adam),
                  "sgd": (mup.MuSGD, keras.optimizers.SGD)}
    cls = optimizers[args.optimizer][0 if mu else 1]
    check = mup.coord_check(build, widths, x, y, steps=args.steps,
                            optimizer=lambda: cls(learning_rate=args.learning_rate),
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    name = "standard parametrization" if args.sp else "µP"
    print(f"log-log slope of mean |activation| against width ({name}, {args.optimizer}, "
          f"lr {args.learning_rate:g})")
    slopes = check.slopes()
    layers = check.layers()
    print("layer".ljust(16) + "".join(f"step {t}".rjust(9) for t in range(1, args.steps + 1)))
    for layer in layers:
        print(layer.ljust(16) + "".join(
            (f"{slopes[(layer, t)]:9.3f}" if (layer, t) in slopes else "        -")
            for t in range(1, args.steps + 1)))
    figure = os.path.join(args.out, "coord_check.png")
    check.plot(figure, title=f"coordinate check, {name}")
    with open(os.path.join(args.out, "coord_check.json"), "w") as f:
        json.dump(check.to_dict(), f, indent=1)
    print(f"\nwrote {figure}")
    return 0


def _coord_mlp(width, depth, features, mu):
    """The coordinate check's MLP: `depth` ReLU layers of `width`, then 10 logits (a zero-started
    `MuReadout` under µP, as mup recommends; Keras' Dense otherwise)."""
    import keras

    from .model_init import mup

    inputs = keras.Input((features,))
    h = inputs
    for _ in range(depth):
        h = keras.layers.Dense(width, activation="relu")(h)
    head = mup.MuReadout(10, readout_zero_init=True) if mu else keras.layers.Dense(10)
    return keras.Model(inputs, head(h))


if __name__ == "__main__":
    sys.exit(main())
