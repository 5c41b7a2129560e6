"""µP, the maximal update parametrization (Yang et al. 2022, Tensor Programs V: Tuning Large
Neural Networks via Zero-Shot Hyperparameter Transfer), for Keras; checked against
microsoft/mup 1.0.0.

Under µP the best learning rate and initialization of a narrow model carry over to a wide one.
Each weight gets a shape that says which of its axes are *width* ("infinite": they grow
with the model) against a narrower base model of the same architecture:

- `set_base_shapes(model, base)` records it, and re-draws the weights by µP: matrix-like
  weights (both fans width, the hidden layers) with var = gain^2 / fan_in, which shrinks
  with width; input layers (fan-in fixed) with var = gain^2 / fan_in, constant in width;
  biases zero; the readout, a `MuReadout` layer, U(+-1 / sqrt(base fan-in)) as mup draws
  it (constant in width), or zero with `readout_zero_init=True`, its input multiplied by
  `output_mult / width_mult` as mup's `MuReadout` does.
- `MuAdam` and `MuSGD` scale each weight's learning rate as mup's optimizers group them:
  under Adam, matrix-like weights take lr / width_mult (the fan-in's multiplier); under
  SGD, vector-like weights (one width axis) lr * width_mult and matrix-like ones
  lr * fanout_mult / fanin_mult.
- `coord_check(build, widths, x, y)` is mup's coordinate check: the mean absolute value of
  every layer's output, per width and per training step. Under µP it stays flat as the
  width grows; under the standard parametrization it grows after the first step.

Keras lays a kernel out `(..., fan_in, fan_out)` where torch has `(fan_out, fan_in, ...)`;
the fan-in and fan-out axes here are the ones torch's `[1]` and `[0]` name.
"""
import math
import typing
import warnings
import weakref

import keras
import numpy as np
from keras import ops

from .. import initializers as inits
from .._compat import flat_layers
from ..activations import following_activation, scheme_for
from ..fans import kernel_axes
from ..initializers.base import check_seed
from .reinitialize import check_model


class InfShape(typing.NamedTuple):
    """A weight's shape against its base: `base[i]` is None on a fixed axis, the base size
    on a width axis; `fan_in` and `fan_out` are the axes that count as each fan."""
    shape: tuple
    base: tuple
    fan_in: tuple
    fan_out: tuple

    def mult(self, axes):
        """The width multiplier over `axes`: the product of size / base size on width axes."""
        return math.prod(self.shape[a] / self.base[a] for a in axes if self.base[a] is not None)

    def ninf(self):
        return sum(b is not None for b in self.base)

    def width_mult(self):
        """mup's `InfShape.width_mult`: the fan-in's multiplier if fan-in is width, else
        the fan-out's (for a vector, its one axis)."""
        if any(self.base[a] is not None for a in self.fan_in):
            return self.mult(self.fan_in)
        return self.mult(self.fan_out)


_SHAPES = {}  # id(variable) -> (weakref to the variable, InfShape)


def infshape(variable):
    """The `InfShape` that `set_base_shapes` gave a variable, or None."""
    entry = _SHAPES.get(id(variable))
    return entry[1] if entry and entry[0]() is variable else None


def _remember(variable, shape):
    _SHAPES[id(variable)] = (weakref.ref(variable, lambda _, key=id(variable): _SHAPES.pop(
        key, None)), shape)


@keras.saving.register_keras_serializable(package="keras_initkit")
class MuReadout(keras.layers.Dense):
    """The output layer of a µP model: `Dense` whose input is multiplied by
    `output_mult / width_mult` (mup's `MuReadout`).

    `set_base_shapes` sets `width_mult` (the fan-in's size over the base's) and draws
    the kernel U(+-1 / sqrt(base fan-in)), or zero with `readout_zero_init=True`.

    Args:
        units: Output size (a fixed, non-width dimension: classes, vocabulary).
        readout_zero_init: Start the kernel and bias at zero.
        output_mult: A constant multiplier of the logits, tuned on the base model.
        width_mult: Set by `set_base_shapes`; saved with the model.
        **kwargs: `Dense`'s other arguments.

    Example:
    >>> outputs = keras_initkit.mup.MuReadout(10)(hidden)
    """

    def __init__(self, units, readout_zero_init=False, output_mult=1.0, width_mult=1.0,
                 **kwargs):
        super().__init__(units, **kwargs)
        for name, value in (("output_mult", output_mult), ("width_mult", width_mult)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite number > 0; received "
                                 f"{name}={value!r}.")
        self.readout_zero_init = bool(readout_zero_init)
        self.output_mult, self.width_mult = float(output_mult), float(width_mult)

    def call(self, inputs, training=None):
        return super().call(inputs * (self.output_mult / self.width_mult), training=training)

    def get_config(self):
        return {**super().get_config(), "readout_zero_init": self.readout_zero_init,
                "output_mult": self.output_mult, "width_mult": self.width_mult}


def _fan_axes(layer, name, shape):
    rank = len(shape)
    if rank < 2:
        return tuple(range(rank)), tuple(range(rank))
    axes = kernel_axes(layer, name, shape)
    if axes is not None:
        return tuple(axes[0]), tuple(axes[1])
    return (rank - 2,), (rank - 1,)


def _owners(model):
    owners = {}
    for layer in flat_layers(model):
        for variable in layer.weights:
            owners[id(variable)] = layer  # inner layers come later and win
    return owners


def set_base_shapes(model, base, delta=None, rescale_params=True, seed=None):
    """Records each weight's width axes against a base model, and draws the weights by µP.

    Args:
        model: The built model to train (the wide one).
        base: A built model of the same architecture at the base width; its weights
            pair with `model`'s in order.
        delta: Optional third model of the same architecture, for when a width axis
            has the same size in `base` and `model`: an axis is width where `base` and
            `delta` differ (mup's `delta`), its base size from `base`.
        rescale_params: Draw the weights by µP (see the module docstring); False
            only records the shapes (a model restored from a checkpoint).
        seed: None, or a non-negative integer for reproducible draws.

    Returns:
        `model`, with its shapes recorded for `MuAdam`, `MuSGD` and `infshape`.

    Raises:
        TypeError: `model` or `base` is not a Keras model.
        ValueError: a model is not built, the weights do not pair (count or rank), or a
            plain `Dense` reads the width out (it must be a `MuReadout`).

    A `fit`, `evaluate` or `predict` traced before holds the old `width_mult`; the
    model's compiled functions are dropped, so the next call traces anew.

    Example:
    >>> model, base = build(width=1024), build(width=64)
    >>> keras_initkit.mup.set_base_shapes(model, base, seed=0)
    >>> model.compile(optimizer=keras_initkit.mup.MuAdam(1e-3), loss=...)
    """
    check_model(model)
    seed = check_seed(seed)
    if not isinstance(rescale_params, bool):
        raise TypeError(f"`rescale_params` must be True or False; received "
                        f"rescale_params={rescale_params!r}.")
    for name, other in (("base", base), ("delta", delta)):
        if other is not None or name == "base":
            if not isinstance(other, keras.Model):
                raise TypeError(f"`{name}` must be a keras.Model of the same architecture; "
                                f"received {type(other).__name__}.")
            check_model(other)
            if len(other.weights) != len(model.weights) or any(
                    len(a.shape) != len(b.shape) for a, b in zip(other.weights, model.weights)):
                raise ValueError(
                    f"`{name}` does not have the architecture of `model`: {len(other.weights)} "
                    f"weights against {len(model.weights)}, paired in order, each of the same "
                    "rank.")
    owners = _owners(model)
    widths = delta.weights if delta is not None else model.weights
    shapes = {}
    for variable, small, other in zip(model.weights, base.weights, widths):
        shape, base_shape = tuple(variable.shape), tuple(small.shape)
        base_dims = tuple(b if b != o else None for b, o in zip(base_shape, other.shape))
        fan_in, fan_out = _fan_axes(owners.get(id(variable)), variable.path.rsplit("/", 1)[-1],
                                    shape)
        shapes[id(variable)] = InfShape(shape, base_dims, fan_in, fan_out)
    _check_readouts(model, shapes)  # before any shape is recorded: a refusal leaves none
    for variable in model.weights:
        _remember(variable, shapes[id(variable)])
    for layer in flat_layers(model):
        if isinstance(layer, MuReadout):
            layer.width_mult = shapes[id(layer.kernel)].mult(shapes[id(layer.kernel)].fan_in)
    # A compiled fit, evaluate or predict holds the old width_mult as a constant of its trace.
    model.train_function = model.test_function = model.predict_function = None
    if rescale_params:
        _draw(model, owners, shapes, seed)
    return model


def _check_readouts(model, shapes):
    """mup's `assert_hidden_size_inf`: a Dense layer whose fan-in is width and whose fan-out
    is fixed reads the hidden width out (logits, a vocabulary) and must be a `MuReadout`,
    or its output grows with width and µP does not hold."""
    for layer in flat_layers(model):
        if isinstance(layer, MuReadout) or not isinstance(
                layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            continue
        shape = shapes.get(id(getattr(layer, "kernel", None)))
        width = shape and [any(shape.base[a] is not None for a in axes)
                           for axes in (shape.fan_in, shape.fan_out)]
        if width == [True, False]:
            base = tuple(b or d for b, d in zip(shape.base, shape.shape))
            raise ValueError(
                f"Layer {layer.name!r} of model {model.name!r} has a width fan-in (kernel "
                f"{shape.shape} against the base's {base}) and a fixed fan-out: it reads "
                "the width out, and under µP that layer must be keras_initkit.mup.MuReadout "
                f"(mup raises the same); received a {type(layer).__name__}.")


def _draw(model, owners, shapes, seed):
    rng = np.random.SeedSequence(seed) if seed is not None else None

    def next_seed():
        return None if rng is None else int(rng.spawn(1)[0].generate_state(1)[0] % 2**31)
    for variable in model.trainable_weights:
        layer = owners.get(id(variable))
        shape = shapes[id(variable)]
        name = variable.path.rsplit("/", 1)[-1]
        if len(shape.shape) < 2:
            if name == "bias":
                variable.assign(ops.zeros(shape.shape, variable.dtype))
            continue
        if isinstance(layer, MuReadout):
            # mup: torch's default U(+-1/sqrt(fan_in)) times sqrt(width_mult), which is
            # U(+-1/sqrt(base fan_in)), constant in width.
            base_fan_in = math.prod(shape.base[a] or shape.shape[a] for a in shape.fan_in)
            limit = 1.0 / math.sqrt(base_fan_in)
            variable.assign(ops.zeros(shape.shape, variable.dtype) if layer.readout_zero_init
                            else inits.RandomUniform(-limit, limit, seed=next_seed())(
                                shape.shape, variable.dtype))
            continue
        elif isinstance(layer, keras.layers.Embedding):
            continue  # an embedding's scale is a hyperparameter of the base model
        else:
            gain = scheme_for(*following_activation(layer))[4] if layer is not None else 1.0
            std = gain / math.sqrt(math.prod(shape.shape[a] for a in shape.fan_in))
        variable.assign(inits.RandomNormal(stddev=std, seed=next_seed())(shape.shape,
                                                                         variable.dtype))


def lr_multiplier(variable, rule):
    """A weight's learning-rate multiplier under mup's `MuAdam` (`rule="adam"`) or `MuSGD`
    (`rule="sgd"`); 1 for a weight without recorded shapes."""
    shape = infshape(variable)
    if shape is None:
        return 1.0
    ninf = shape.ninf()
    if ninf > 2:
        raise NotImplementedError(f"{variable.path} has {ninf} width axes; µP as mup defines "
                                  "it handles at most 2.")
    if rule == "adam":
        return 1.0 / shape.width_mult() if ninf == 2 else 1.0
    if ninf == 1:
        return shape.width_mult()
    if ninf == 2:
        return shape.mult(shape.fan_out) / shape.mult(shape.fan_in)
    return 1.0


class _MuScaled:
    """Mixes a per-weight learning-rate multiplier into a Keras optimizer's update."""

    rule = "adam"

    def build(self, variables):
        # update_step may see the Keras variable or, on TensorFlow, the tf.Variable under it.
        self._multipliers = {}
        for v in variables:
            for key in (id(v), id(getattr(v, "value", v))):
                self._multipliers[key] = lr_multiplier(v, self.rule)
        if variables and all(infshape(v) is None for v in variables):
            warnings.warn(f"{type(self).__name__}: no weight has µP shapes; call "
                          "keras_initkit.mup.set_base_shapes(model, base) before training, "
                          "or every learning rate stays as given.", stacklevel=2)
        super().build(variables)

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multipliers.get(id(variable), 1.0)
        if multiplier != 1.0:
            learning_rate = ops.cast(learning_rate, variable.dtype) * multiplier
        super().update_step(gradient, variable, learning_rate)


@keras.saving.register_keras_serializable(package="keras_initkit")
class MuAdam(_MuScaled, keras.optimizers.Adam):
    """Adam with µP's per-weight learning rates (mup's `MuAdam`): a weight with two width
    axes (a hidden matrix) takes lr / width_mult, every other weight lr.

    Args: those of `keras.optimizers.Adam`.

    Example:
    >>> model.compile(optimizer=keras_initkit.mup.MuAdam(learning_rate=1e-3), loss="mse")
    """

    rule = "adam"


@keras.saving.register_keras_serializable(package="keras_initkit")
class MuSGD(_MuScaled, keras.optimizers.SGD):
    """SGD with µP's per-weight learning rates (mup's `MuSGD`): a weight with one width axis
    takes lr * width_mult, one with two lr * fanout_mult / fanin_mult, the rest lr.

    Args: those of `keras.optimizers.SGD`.

    Example:
    >>> model.compile(optimizer=keras_initkit.mup.MuSGD(learning_rate=0.1), loss="mse")
    """

    rule = "sgd"


class CoordCheck:
    """The result of `coord_check`: one record per width, layer and step.

    Attributes:
        records: list of dicts `width`, `layer`, `step` (1 = before any update) and
            `l1` (the mean absolute value of the layer's output on the batch).
    """

    def __init__(self, records, widths, steps):
        self.records, self.widths, self.steps = records, list(widths), steps

    def layers(self):
        return list(dict.fromkeys(r["layer"] for r in self.records))

    def slopes(self):
        """`{(layer, step): slope}` of log l1 against log width (least squares)."""
        out = {}
        for layer in self.layers():
            for step in range(1, self.steps + 1):
                points = [(r["width"], r["l1"]) for r in self.records
                          if r["layer"] == layer and r["step"] == step and r["l1"] > 0]
                if len(points) >= 2:
                    w, v = np.log([p[0] for p in points]), np.log([p[1] for p in points])
                    out[(layer, step)] = float(np.polyfit(w, v, 1)[0])
        return out

    def worst_slope(self, step=None):
        """The largest |slope| over layers, at one step or over all."""
        return max(abs(v) for (layer, t), v in self.slopes().items()
                   if step is None or t == step)

    def to_dict(self):
        return {"widths": self.widths, "steps": self.steps, "records": self.records,
                "slopes": [{"layer": k[0], "step": k[1], "slope": v}
                           for k, v in self.slopes().items()]}

    def plot(self, path=None, title=None):
        """mup's picture: one panel per step, mean |activation| against width (log-log), one
        line per layer. Returns the matplotlib figure; saves it to `path` if given."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, self.steps, figsize=(4 * self.steps, 3.4), sharey=True,
                                 squeeze=False)
        colours = plt.get_cmap("viridis")
        layers = self.layers()
        for t, ax in enumerate(axes[0], start=1):
            for i, layer in enumerate(layers):
                points = sorted((r["width"], r["l1"]) for r in self.records
                                if r["layer"] == layer and r["step"] == t)
                ax.plot(*zip(*points), marker="o", ms=3, label=layer,
                        color=colours(i / max(1, len(layers) - 1)))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"step {t}")
            ax.set_xlabel("width")
        axes[0][0].set_ylabel("mean |activation|")
        axes[0][-1].legend(fontsize=7, loc="best")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def coord_check(build, widths, x, y, steps=3, optimizer=None, loss="mse"):
    """mup's coordinate check: the size of every layer's output against width, over steps.

    For each width, `build(width)` makes a model (apply `set_base_shapes` inside it for µP),
    then for `steps` steps: the mean absolute value of each layer's output on `x` is
    recorded, and one optimizer step is taken on `(x, y)`. Under µP every curve stays flat
    in width (Yang et al. 2022, Fig. 5; mup's `get_coord_data`, statistic `l1`); under the
    standard parametrization the outputs grow with width from the second step on.

    Args:
        build: A function of the width that returns a built Functional or Sequential model.
        widths: The widths, at least 2, increasing.
        x, y: One batch, as `model.train_on_batch` takes it.
        steps: Number of steps recorded (the first before any update), >= 1.
        optimizer: A function of no arguments that returns a fresh optimizer for each
            width (default: `MuAdam(learning_rate=1e-2)`).
        loss: Anything `model.compile` takes as `loss`.

    Returns:
        A `CoordCheck`: `.records`, `.slopes()`, `.worst_slope(step)`, `.plot(path)`.

    Raises:
        ValueError: fewer than 2 widths, `steps` < 1, or a model without symbolic inputs.

    Example:
    >>> check = keras_initkit.mup.coord_check(build_mlp, [64, 128, 256, 512, 1024], x, y)
    >>> check.worst_slope(step=3)  # near 0 under µP
    >>> check.plot("coord_check.png")
    """
    widths = list(widths)
    if len(widths) < 2 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f"`widths` must hold at least 2 positive integers; received "
                         f"widths={widths!r}.")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
        raise ValueError(f"`steps` must be an integer >= 1; received steps={steps!r}.")
    if optimizer is not None and not callable(optimizer):
        raise TypeError("`optimizer` must be a function that returns a fresh optimizer for "
                        f"each width; received optimizer={optimizer!r}.")
    make_optimizer = optimizer or (lambda: MuAdam(learning_rate=1e-2))
    records = []
    for width in widths:
        model = build(width)
        check_model(model)
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(f"coord_check reads every layer's output, which needs a "
                             f"Functional or Sequential model; build({width}) returned "
                             f"{type(model).__name__} {model.name!r} with no symbolic inputs.")
        layers = [layer for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
        reader = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                             [layer.output for layer in layers])
        names = [f"{i}:{type(layer).__name__}" for i, layer in enumerate(layers)]
        model.compile(optimizer=make_optimizer(), loss=loss)
        for step in range(1, steps + 1):
            outputs = reader(x, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for name, out in zip(names, outputs):
                records.append({"width": width, "layer": name, "step": step,
                                "l1": float(ops.convert_to_numpy(ops.mean(ops.abs(out))))})
            if step < steps:
                model.train_on_batch(x, y)
    return CoordCheck(records, widths, steps)
