"""The one batch a probe runs on, from what a user hands `diagnose` or `SignalMonitor`."""
import keras


def one_batch(data, name, pairs=True):
    """`(x, y)` of `data`: `x`, `(x, y)` or `(x, y, sample_weight)` (the weights are not
    used: the probe judges signals, not a weighted loss), or a `tf.data.Dataset` or
    `keras.utils.PyDataset` whose first batch is one of those. Without `pairs`, a tuple
    that is not a dataset's batch is `x` itself (a model's inputs, `diagnose`'s `x`).

    Raises:
        TypeError: naming `name`, where an input is not an array with a batch axis.
        ValueError: naming `name`, for a tuple of another length.
    """
    first = _first_batch_of(data)
    if isinstance(first, tuple) and (pairs or first is not data):
        data = first
        if not 1 <= len(data) <= 3:
            raise ValueError(f"`{name}` must be x, (x, y) or (x, y, sample_weight); received "
                             f"a tuple of {len(data)} items.")
        x, y = data[0], data[1] if len(data) > 1 else None
    else:
        x, y = first, None
    for part, value in (("inputs", x), ("targets", y)):
        if value is None and part == "targets":
            continue
        leaves = keras.tree.flatten(value) if value is not None else []
        bad = [leaf for leaf in leaves if len(getattr(leaf, "shape", ())) < 1]
        if not leaves or bad:
            raise TypeError(f"`{name}` {part} must be arrays or tensors with a batch axis "
                            "(NumPy, a backend tensor, or a list, tuple or dict of them); "
                            f"received {_describe(bad[0] if bad else value)}.")
    check_batch_sizes(x, y, f"`{name}` holds")
    return x, y


def check_batch_sizes(x, y, holder):
    """A ValueError where the inputs and targets hold different batch sizes; `holder`
    names the argument (`"`x` and `y` hold"`)."""
    sizes = {int(leaf.shape[0]) for leaf in keras.tree.flatten((x, y))
             if leaf is not None and getattr(leaf, "shape", None) and leaf.shape[0] is not None}
    if len(sizes) > 1:
        raise ValueError(f"{holder} batches of different sizes {sorted(sizes)}: inputs "
                         "and targets must have the same first axis.")


def _first_batch_of(data):
    """The first batch of a `tf.data.Dataset` or a `keras.utils.PyDataset`; else `data`."""
    if isinstance(data, keras.utils.PyDataset):
        return data[0]
    if type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec"):
        return next(iter(data))
    return data


def _describe(value):
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
