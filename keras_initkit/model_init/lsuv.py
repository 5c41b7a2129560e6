"""Data-dependent initialization: LSUV (Mishkin & Matas 2016) and the weight-normalization
init (Salimans & Kingma 2016).

Both set each layer from the signal that reaches it. The papers' loops run the
whole model forward for every layer (and every LSUV iteration). Here the model
runs forward once: when the pass reaches a Dense or convolution layer, that
layer alone is set on the input it was handed, and the pass goes on with the
corrected output. Each layer's input is computed once.
"""
import contextlib
import math
import numbers
import time
import warnings

import keras
from keras import ops

from .._compat import flat_layers
from ..diagnostics.batch import one_batch
from ..diagnostics.probe import layer_path
from ..distribution import multi_worker
from ..fans import kernel_axes
from ..initializers import Orthogonal, RandomNormal
from ..initializers.base import check_seed
from .reinitialize import check_model
from .report import Rows

L = keras.layers

# The layers LSUV scales, and the kernel each one is scaled by.
_SCALED = ((L.SeparableConv1D, "pointwise_kernel"), (L.SeparableConv2D, "pointwise_kernel"),
           (L.DepthwiseConv1D, "kernel"), (L.DepthwiseConv2D, "kernel"),
           (L.Dense, "kernel"), (L.EinsumDense, "kernel"), (L.Conv1D, "kernel"),
           (L.Conv2D, "kernel"), (L.Conv3D, "kernel"), (L.Conv1DTranspose, "kernel"),
           (L.Conv2DTranspose, "kernel"), (L.Conv3DTranspose, "kernel"))


def check_lsuv_args(target_var, tol, max_iter, orthonormal, seed=None):
    """Validates lsuv()'s settings (shared with the LSUVInit callback, which checks early)."""
    check_seed(seed)
    for name, value in (("target_var", target_var), ("tol", tol)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                not math.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a positive number; received {name}={value!r}.")
    if tol >= target_var:
        raise ValueError(f"`tol` must be smaller than `target_var`; received tol={tol} and "
                         f"target_var={target_var}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"`max_iter` must be an integer >= 1; received max_iter={max_iter!r}.")
    if not isinstance(orthonormal, bool):
        raise TypeError(f"`orthonormal` must be True or False; received {orthonormal!r}.")


def check_sample(x):
    """The batch of inputs `x` stands for: itself, or a dataset's first batch's inputs."""
    if x is None:
        raise TypeError("`x` must be a batch of the model's inputs (an array, or a list or "
                        "dict of arrays, as the model takes them); received x=None.")
    return one_batch(x, "x", pairs=False)[0]


def scaled_kernel(layer):
    """The kernel variable LSUV scales in `layer`, or None for a layer it leaves alone."""
    for cls, name in _SCALED:
        if isinstance(layer, cls):
            return getattr(layer, name, None)
    return None


def lsuv(model, x, *, target_var=1.0, tol=0.1, max_iter=10, orthonormal=True, seed=None):
    """Layer-sequential unit-variance initialization of a built model, in place.

    Mishkin & Matas 2016, "All you need is a good init" (Algorithm 1): first
    every Dense and convolution kernel is set to an orthonormal matrix (Saxe et
    al. 2014); then, layer by layer in depth order, the kernel is divided by
    `sqrt(var / target_var)`, where `var` is the variance of the layer's linear
    output on the batch `x`, until `|var - target_var| < tol` or `max_iter`
    rescalings. For a layer with a fused activation (`Dense(..., activation="tanh")`)
    the variance is taken before the activation, as the paper measured
    convolution outputs before a separate ReLU: a bounded activation could never
    reach variance 1 after it.

    The model runs forward once, in inference mode (Dropout off). When the pass
    reaches a layer, that layer alone is re-evaluated on the input it was
    handed, so the cost is one forward pass plus one layer evaluation per
    iteration, where the paper's loop runs the whole model for each.

    Batch normalization: the paper scales every convolution and inner-product
    layer, whatever follows it, and so does this. A layer followed by
    BatchNormalization is scaled to `target_var` on its own output; at
    initialization, in inference mode, the BatchNormalization (moving mean 0,
    variance 1, gamma 1, beta 0) passes that output on unchanged, and in
    training it normalizes with batch statistics, so the next layers see the
    same unit scale either way.

    Under a `tf.distribute` strategy, call it inside or outside the scope:
    each assignment sets every replica's copy. On a multi-worker job each
    worker assigns its own copies, so every worker must pass the same `x` and
    the same integer `seed` to end with the same weights (it warns when
    `seed` is None there).

    Args:
        model: A built `keras.Model` (Sequential, Functional, nested or subclassed).
        x: One batch of inputs, as the model takes them (an array, or a list or
            dict of arrays), or a `tf.data.Dataset` or `keras.utils.PyDataset`
            whose first batch's inputs are used. A few hundred samples make the
            variances stable.
        target_var: The output variance each layer is brought to. Default 1.
        tol: The accepted distance from `target_var`. Default 0.1, the paper's.
        max_iter: The most rescalings per layer. Default 10, the paper's.
        orthonormal: Start from orthonormal kernels (the paper's first step).
            False keeps the kernels the model has.
        seed: None, or an integer seed for the orthonormal kernels.

    Returns:
        A `Rows` report, one row per scaled layer: `layer`, `iterations`,
        `variance` (the final variance of its linear output) and `converged`;
        its totals are `layer_evaluations` (layer calls, LSUV's retries
        included), `forward_passes` (1) and `seconds`.

    Raises:
        ValueError: a setting is out of range, the model is not built, or a
            layer's output variance is zero or not finite (named in the message).

    Example:
    >>> report = keras_initkit.lsuv(model, x_train[:256])
    >>> print(report.table())
    """
    check_model(model)
    check_lsuv_args(target_var, tol, max_iter, orthonormal, seed)
    x = check_sample(x)
    if orthonormal and seed is None and multi_worker(model):
        warnings.warn(
            f"lsuv: model {model.name!r} trains on several workers and seed=None: each worker "
            "draws its own orthonormal kernels (alike only if every process seeded its random "
            "generators alike), and workers with different weights train different models. "
            "Pass the same integer seed= and the same x on every worker.", stacklevel=2)
    start = time.perf_counter()
    leaves = [layer for layer in flat_layers(model)
              if not isinstance(layer, keras.Model)]
    targets = {id(layer): (layer, scaled_kernel(layer)) for layer in leaves
               if scaled_kernel(layer) is not None}
    if orthonormal:
        init = Orthogonal(seed=seed)
        for layer, kernel in targets.values():
            kernel.assign(_orthonormal(init, layer, kernel))
    report = Rows(("layer", "iterations", "variance", "converged"),
                  layer_evaluations=0, forward_passes=1, seconds=0.0)
    one_pass(model, x, targets, report, lambda layer, kernel, call, args, kwargs: _scale(
        layer, kernel, call, args, kwargs, target_var, tol, max_iter, report))
    report.seconds = time.perf_counter() - start
    return report


def _orthonormal(init, layer, kernel):
    """An orthonormal kernel for the map it computes: an EinsumDense kernel such as
    attention's (d, heads, head_dim) is orthonormal from its input axes to its output axes,
    not on the flattening (d * heads, head_dim) of its shape."""
    shape = tuple(kernel.shape)
    axes = kernel_axes(layer, kernel.path.rsplit("/", 1)[-1], shape)
    if axes is None or sorted(axes[0] + axes[1]) != list(range(len(shape))):
        return init(shape, dtype=kernel.dtype)  # (*k, in, out) flattens to the map, or the
        # axes overlap (a transposed or depthwise kernel's spatial axes): the flattening
    order = list(axes[0]) + list(axes[1])
    matrix = init((math.prod(shape[a] for a in axes[0]), math.prod(shape[a] for a in axes[1])),
                  dtype=kernel.dtype)
    return ops.transpose(ops.reshape(matrix, [shape[a] for a in order]),
                         [order.index(a) for a in range(len(shape))])


def one_pass(model, x, targets, report, set_layer):
    """Runs `model` forward once on `x`, in inference mode; at the first call of each layer in
    `targets` (`id -> (layer, kernel)`), `set_layer(layer, kernel, call, args, kwargs)` sets
    it and returns its output, which the pass goes on with."""
    leaves = [layer for layer in flat_layers(model)
              if not isinstance(layer, keras.Model)]
    originals = {}
    done = set()

    def wrap(layer):
        original = layer.call

        def call(*args, **kwargs):
            report.layer_evaluations += 1
            if id(layer) not in targets or id(layer) in done:
                return original(*args, **kwargs)
            done.add(id(layer))  # a shared layer is set at its first call
            return set_layer(layer, targets[id(layer)][1], original, args, kwargs)

        originals[layer] = original if "call" in vars(layer) else None
        layer.call = call

    for layer in leaves:
        wrap(layer)
    try:
        inputs = keras.tree.map_structure(ops.convert_to_tensor, x)
        model(inputs, training=False)
    finally:
        for layer, original in originals.items():
            if original is None:
                del layer.call  # back to the class's method
            else:
                layer.call = original


@contextlib.contextmanager
def _linear(layer):
    """The layer's fused activation set to linear while inside; yields the activation."""
    activation = getattr(layer, "activation", None)
    if activation is not None:
        layer.activation = keras.activations.linear
    try:
        yield activation
    finally:
        if activation is not None:
            layer.activation = activation


def _scale(layer, kernel, call, args, kwargs, target_var, tol, max_iter, report):
    """Rescales `layer`'s kernel on its own input; returns its output with the final kernel."""
    with _linear(layer) as activation:  # measure before a fused activation
        iterations = 0
        while True:
            z = call(*args, **kwargs)
            if iterations:
                report.layer_evaluations += 1
            var = float(ops.convert_to_numpy(ops.var(ops.cast(z, "float32"))))
            if not math.isfinite(var) or var <= 0:
                raise ValueError(
                    f"lsuv: layer '{layer_path(layer)}' has output variance {var} on the batch, "
                    "so it cannot be rescaled to unit variance. Its input is constant or holds "
                    "NaN/Inf, or its kernel is zero: check the data and the layers before it.")
            converged = abs(var - target_var) < tol
            if converged or iterations == max_iter:
                break
            kernel.assign(kernel * ops.cast(math.sqrt(target_var / var), kernel.dtype))
            iterations += 1
    report.append(layer=layer_path(layer), iterations=iterations, variance=var,
                  converged=converged)
    return activation(z) if activation is not None else z


# The layers the weight-normalization init sets: one output channel per last kernel axis.
_PER_CHANNEL = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)


def weight_norm_init(model, x, *, init_std=0.05, seed=None):
    """The data-dependent initialization of weight normalization (Salimans & Kingma 2016,
    Weight Normalization, Section 3), in place.

    Each Dense and convolution kernel is drawn N(0, init_std^2) (the paper's v),
    then, layer by layer in depth order, every output channel c is set from the
    batch: with t_c the layer's pre-activation for channel c over the batch (and
    every spatial position), mu_c = mean(t_c) and sigma_c = std(t_c),

        W[..., c] <- W[..., c] / sigma_c,    b[c] <- -mu_c / sigma_c,

    which is the paper's g = 1 / sigma, b = -mu / sigma written on the plain
    kernel: every pre-activation starts at zero mean and unit variance per
    channel on the batch. A layer without a bias gets the scale alone (its
    mean is not moved). The model runs forward once, as `lsuv` does.

    Args:
        model: A built `keras.Model`.
        x: One batch of inputs, as the model takes them; a few hundred samples.
        init_std: Std of the starting kernels, > 0 (the paper's 0.05).
        seed: None, or an integer seed for the starting kernels.

    Returns:
        A `Rows` report, one row per layer: `layer`, `mean` and `std` (of its
        pre-activation before the correction, averaged over channels); totals
        `layer_evaluations`, `forward_passes` (1) and `seconds`.

    Raises:
        ValueError: `init_std` is not a positive number, the model is not built,
            or a channel's pre-activation is constant or not finite (named).

    Example:
    >>> keras_initkit.weight_norm_init(model, x_train[:256], seed=0)
    """
    check_model(model)
    if isinstance(init_std, bool) or not isinstance(init_std, numbers.Real) or \
            not math.isfinite(init_std) or init_std <= 0:
        raise ValueError(f"`init_std` must be a positive number; received init_std={init_std!r}.")
    seed = check_seed(seed)
    x = check_sample(x)
    start = time.perf_counter()
    leaves = [layer for layer in flat_layers(model)
              if isinstance(layer, _PER_CHANNEL)]
    targets = {id(layer): (layer, layer.kernel) for layer in leaves}
    draw = RandomNormal(stddev=init_std, seed=seed)
    for layer in leaves:
        layer.kernel.assign(draw(layer.kernel.shape, dtype=layer.kernel.dtype))
    report = Rows(("layer", "mean", "std"), layer_evaluations=0, forward_passes=1, seconds=0.0)
    one_pass(model, x, targets, report, lambda layer, kernel, call, args, kwargs:
             _normalize_channels(layer, kernel, call, args, kwargs, report))
    report.seconds = time.perf_counter() - start
    return report


def _normalize_channels(layer, kernel, call, args, kwargs, report):
    with _linear(layer) as activation:
        z = ops.cast(call(*args, **kwargs), "float32")
        axes = tuple(range(len(z.shape) - 1))
        mean, std = ops.mean(z, axis=axes), ops.std(z, axis=axes)
        # A constant channel's std, computed in float32, is rounding noise of its mean:
        # below 1e-5 of it counts as zero.
        resolvable = ops.convert_to_numpy(std / (1e-5 * ops.abs(mean) + 1e-30))
        smallest = float(ops.convert_to_numpy(ops.min(std)))
        if not math.isfinite(smallest) or not (resolvable > 1).all():
            raise ValueError(
                f"weight_norm_init: layer '{layer_path(layer)}' has an output channel whose "
                f"pre-activation std is {smallest} on the batch, so it cannot be normalized: "
                "its input is constant or holds NaN/Inf; check the data and the layers before it.")
        kernel.assign(kernel / ops.cast(std, kernel.dtype))
        z = (z - mean) / std if layer.use_bias else z / std
        if layer.use_bias:  # z = W x + b, so (z - mean) / std needs b <- (b - mean) / std
            layer.bias.assign(ops.cast((ops.cast(layer.bias, "float32") - mean) / std,
                                       layer.bias.dtype))
    report.append(layer=layer_path(layer), mean=float(ops.convert_to_numpy(ops.mean(mean))),
                  std=float(ops.convert_to_numpy(ops.mean(std))))
    z = ops.cast(z, layer.compute_dtype)
    return activation(z) if activation is not None else z
