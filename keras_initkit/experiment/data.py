"""The experiment's inputs: the bundled data or an `.npz` file, a saved model, and the checks
that they fit each other, all before any training starts."""
import os

import keras
import numpy as np

from ..callbacks.signal_monitor import ensure_writable


def load_data(path=None, seed=0, images=False):
    """`(x_train, y_train, x_val, y_val)` as float32 inputs and their targets.

    Without `path`: scikit-learn's bundled 8x8 digits (1,797 images, 10
    classes; nothing is downloaded), each pixel standardized on the training
    split, 20% held out for validation; vectors of 64 pixels, or with
    `images=True` images of shape (8, 8, 1). With `path`: an `.npz` file holding
    `x_train` and `y_train`, and optionally `x_val` and `y_val` (else 20% of
    the training arrays, drawn with `seed`). It is read with
    `allow_pickle=False`: a file never runs code.

    Raises:
        ValueError: the file is missing, unreadable, lacks an array, or the
            arrays' lengths disagree.
    """
    if path is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.data.astype("float32"), digits.target.astype("int32")
        x_train, y_train, x_val, y_val = hold_out(x, y, seed)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
        shape = (-1, 8, 8, 1) if images else (-1, 64)
        return ((x_train - mean) / std).reshape(shape), y_train, \
            ((x_val - mean) / std).reshape(shape), y_val
    path = os.fspath(path)
    arrays = read_npz(path)
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise ValueError(f"Data file {path!r} lacks {' and '.join(missing)}; it must hold "
                         f"x_train and y_train (x_val and y_val optional), found "
                         f"{sorted(arrays) or 'no arrays'}.")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ValueError(f"Data file {path!r} holds only one of x_val and y_val; give both "
                         "or neither.")
    x, y = arrays["x_train"], arrays["y_train"]
    if "x_val" in arrays:
        split = (x, y, arrays["x_val"], arrays["y_val"])
    else:
        split = hold_out(x, y, seed)
    for (inputs, targets), part in ((split[:2], "train"), (split[2:], "val")):
        if inputs.ndim < 2 or len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError(f"Data file {path!r}: x_{part} must be a non-empty array of rank "
                             f">= 2 with one target per sample; received x_{part} of shape "
                             f"{inputs.shape} and y_{part} of shape {targets.shape}.")
        if not np.issubdtype(inputs.dtype, np.number):
            raise ValueError(f"Data file {path!r}: x_{part} must be numeric; received dtype "
                             f"{inputs.dtype}.")
    x_train, y_train, x_val, y_val = split
    return x_train.astype("float32"), y_train, x_val.astype("float32"), y_val


def read_npz(path):
    """The arrays of an `.npz` file, read with `allow_pickle=False` (a file never runs code).

    Raises:
        ValueError: the file is missing or not a readable `.npz`.
    """
    if not os.path.isfile(path):
        raise ValueError(f"Data file {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as file:
            return {key: file[key] for key in file.files}
    except Exception as error:  # any unreadable file gets the same one line
        raise ValueError(f"Data file {path!r} is not a readable .npz file "
                         f"({type(error).__name__}: {first_line(error)}).") from None


def hold_out(x, y, seed):
    """`(x_train, y_train, x_val, y_val)`: 20% of the samples, drawn with `seed`, held out."""
    if len(x) != len(y):
        raise ValueError(f"x_train has {len(x)} samples but y_train has {len(y)}.")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, len(x) // 5)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def load_model(path):
    """A saved model, or a one-line ValueError that says why it could not be read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"Model file {path!r} does not exist.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # corrupt zips, bad configs, unknown classes
        raise ValueError(f"Cannot load the model {path!r} ({type(error).__name__}: "
                         f"{first_line(error)}).") from None


def check_fits(model, x, y, part="train"):
    """Raises a ValueError when the data's shape does not fit the model's input or output;
    `part` ("train" or "val") names the arrays in the message."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"The model has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; the experiment takes a model with one of each.")
    try:
        check_samples(x, tuple(model.inputs[0].shape[1:]))
    except ValueError as error:
        raise ValueError(f"x_{part}: {error}") from None
    if y.ndim == 1 and (y.dtype.kind in "USO" or (
            np.issubdtype(y.dtype, np.integer) and y.min() < 0)):
        raise ValueError(f"y_{part} holds {y.dtype} labels"
                         + (f" down to {y.min()}" if y.dtype.kind in "iu" else "")
                         + "; class labels are integers from 0 to classes - 1, regression "
                         "targets floats.")
    units = model.outputs[0].shape[-1]
    if is_classification(y, model):
        classes = int(y.max()) + 1
        if units is None or units < classes or \
                tuple(model.outputs[0].shape[1:-1]) != tuple(y.shape[1:]):
            raise ValueError(f"y_{part} has {classes} classes and labels of shape "
                             f"{y.shape[1:]} per sample, but the model outputs "
                             f"{tuple(model.outputs[0].shape[1:])}.")
    elif tuple(model.outputs[0].shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(f"y_{part}: the targets have shape {y.shape[1:]} per sample but the model "
                         f"outputs {tuple(model.outputs[0].shape[1:])}.")


def check_samples(x, expected):
    """Raises a ValueError when the samples of `x` do not have the shape `expected`
    (None matches any size)."""
    if len(expected) != x.ndim - 1 or any(e is not None and e != s
                                          for e, s in zip(expected, x.shape[1:])):
        raise ValueError(f"The data's samples have shape {x.shape[1:]} but the model takes "
                         f"{expected}.")


def is_classification(y, model=None):
    """Class labels: non-negative integers, one per sample, or one per position of a sequence
    when the model's output has one axis more than the labels (the classes)."""
    if not (np.issubdtype(y.dtype, np.integer) and y.ndim >= 1 and y.min() >= 0):
        return False
    return y.ndim == 1 or (model is not None and len(model.outputs[0].shape) == y.ndim + 1)


def loss_for(model, y):
    """The loss for targets `y`: sparse cross-entropy for class labels (1-D non-negative
    integers), on logits unless the model ends in a softmax; mean squared error otherwise."""
    if not is_classification(y, model):
        return keras.losses.MeanSquaredError()
    last = model.layers[-1].get_config().get("activation") if model.layers else None
    return keras.losses.SparseCategoricalCrossentropy(from_logits=last != "softmax")


def first_line(error):
    return (str(error).strip().splitlines() or [""])[0][:200]


def check_out(out):
    """Creates `out` and proves it writable, or raises a one-line ValueError."""
    ensure_writable(out, f"Cannot write to the output folder {os.fspath(out)!r}")
