"""Variance-scaling schemes: Glorot/Xavier, He/Kaiming, LeCun and the general form.

Each draws weights of variance `scale / n`, where `n` is `fan_in`, `fan_out`,
their mean, or their geometric mean (JAX's `fan_geo_avg`), as Keras counts fans
(`keras_initkit.fans.compute_fans`). The variance sampled is the variance promised, for
every distribution:

- `normal`: N(0, scale / n), untruncated (torch's `kaiming_normal_`).
- `truncated_normal`: cut at +-2 underlying std, the underlying std widened by
  1 / 0.87962566103423978 so that the sampled std is sqrt(scale / n) exactly
  (Keras' choice for its named schemes, kept here).
- `uniform`: U(-l, l) with l = sqrt(3 * scale / n).

The classes subclass Keras' own `VarianceScaling`, so that `EinsumDense` hands
them its input and output axes and their fans are right for einsum kernels.
"""
import math

import keras

from ..fans import check_axes, compute_fans, gain
from .base import KitInitializer, check_choice, check_number, check_spread
from .random import sample_normal, sample_truncated_normal, sample_uniform

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


@keras.saving.register_keras_serializable(package="keras_initkit")
class VarianceScaling(KitInitializer, keras.initializers.VarianceScaling):
    """Weights of variance `scale * gain(activation)^2 / n`.

    `n` is `fan_in`, `fan_out`, `(fan_in + fan_out) / 2` or
    `sqrt(fan_in * fan_out)` by `mode`. This is the general form of Glorot &
    Bengio 2010, He et al. 2015 and LeCun et al. 1998; `"fan_geo_avg"` is
    `jax.nn.initializers.variance_scaling`'s mode of the same name (the
    geometric mean keeps the variance between the two fans' for any aspect
    ratio). See the module docstring for each distribution and its correction.

    Args:
        scale: Positive multiplier of the variance.
        mode: `"fan_in"`, `"fan_out"`, `"fan_avg"` or `"fan_geo_avg"`.
        distribution: `"normal"`, `"truncated_normal"` or `"uniform"`
            (Keras' `"untruncated_normal"` is accepted and stored as `"normal"`).
        activation: Optional activation name; its `keras_initkit.gain` squared
            multiplies `scale` (`activation="relu"` with `scale=1` is He).
        activation_params: Optional dict of parameters for the gain, for
            example `{"negative_slope": 0.2}` for `leaky_relu`.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted, as in Keras' own `VarianceScaling`.
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> init = VarianceScaling(mode="fan_in", distribution="normal",
    ...                        activation="leaky_relu",
    ...                        activation_params={"negative_slope": 0.2})
    >>> keras.layers.Dense(64, kernel_initializer=init)
    """

    formula = ("var = scale * gain(activation)^2 / fan "
               "(fan_in | fan_out | fan_avg | sqrt(fan_in * fan_out))")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal",
                 activation=None, activation_params=None, input_axes=None,
                 output_axes=None, seed=None):
        KitInitializer.__init__(self, seed)
        self.scale = check_number("scale", scale, positive=True)
        self.mode = check_choice("mode", mode, MODES)
        if isinstance(distribution, str) and distribution == "untruncated_normal":
            distribution = "normal"
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        if activation is not None and not isinstance(activation, str):
            raise TypeError(
                "`activation` must be None or an activation name, so that the config stays "
                f"serializable; received {activation!r}. For a callable f, pass "
                "scale=keras_initkit.gain(f) ** 2 instead."
            )
        if activation_params is not None and (not isinstance(activation_params, dict) or not all(
                isinstance(k, str) for k in activation_params)):
            raise TypeError(
                "`activation_params` must be None or a dict of parameter names to values; "
                f"received activation_params={activation_params!r}."
            )
        if activation_params and activation is None:
            raise ValueError(
                f"`activation_params` was given without an `activation`; received "
                f"activation_params={activation_params!r}, activation=None.")
        self.activation = activation
        self.activation_params = dict(activation_params) if activation_params else None
        # Resolve the gain now: an unknown name or parameter fails at construction.
        self._gain = 1.0 if activation is None else _checked_gain(activation, activation_params)
        self.input_axes = check_axes("input_axes", input_axes)
        self.output_axes = check_axes("output_axes", output_axes)
        if (self.input_axes is None) != (self.output_axes is None):
            raise ValueError(
                "`input_axes` and `output_axes` go together: give both or neither; received "
                f"input_axes={input_axes!r}, output_axes={output_axes!r}."
            )

    def variance(self, shape):
        """The variance each entry is drawn with, for a given shape."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
               "fan_geo_avg": math.sqrt(fan_in * fan_out)}
        return self.scale * self._gain**2 / max(1.0, fan[self.mode])

    def generate(self, shape, dtype):
        std = math.sqrt(self.variance(shape))
        # 6 std bounds every law here (uniform: sqrt(3) std, truncated: 2.27 std).
        check_spread(f"scale (std = sqrt(scale * gain^2 / fan) = {std:.3g} for shape {shape})",
                     std, 6 * std, dtype)
        seed = self.next_seed()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0) * std
            return sample_uniform(shape, -limit, limit, dtype, seed)
        sampler = sample_normal if self.distribution == "normal" else sample_truncated_normal
        return sampler(shape, 0.0, std, dtype, seed)

    def get_config(self):
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "activation": self.activation,
            "activation_params": self.activation_params,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
            "seed": self._seed,
        }


def _checked_gain(activation, params):
    """`gain(activation, **params)`; a refusal (an unknown parameter, or a gain that is not
    finite and > 0) also names the arguments it came in."""
    try:
        return gain(activation, **(params or {}))
    except ValueError as error:
        raise ValueError(f"{error} (received activation={activation!r}, "
                         f"activation_params={params!r})") from None


class _NamedScheme(VarianceScaling):
    """A fixed (scale, mode, distribution); only the seed and fan axes are free."""

    scheme = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self.scheme
        super().__init__(scale=scale, mode=mode, distribution=distribution,
                         input_axes=input_axes, output_axes=output_axes, seed=seed)

    def get_config(self):
        return {"seed": self._seed, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


@keras.saving.register_keras_serializable(package="keras_initkit")
class GlorotUniform(_NamedScheme):
    """Glorot (Xavier) uniform initializer.

    U(-l, l), l = sqrt(6 / (fan_in + fan_out)). Variance 2 / (fan_in + fan_out).

    Paper: Glorot & Bengio 2010, Understanding the difficulty of training deep
    feedforward networks.

    Args:
        seed: None, or a non-negative integer for a reproducible sequence of draws.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted (EinsumDense passes them).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> keras.layers.Dense(64, kernel_initializer="kit_glorot_uniform")
    """

    scheme = (1.0, "fan_avg", "uniform")
    formula = "U(-l, l), l = sqrt(6 / (fan_in + fan_out))"


@keras.saving.register_keras_serializable(package="keras_initkit")
class GlorotNormal(_NamedScheme):
    """Glorot (Xavier) normal initializer.

    var = 2 / (fan_in + fan_out), truncated normal. Truncated at +-2 underlying std, the std
    corrected by 1 / 0.87962566103423978 so the variance is exact.

    Paper: Glorot & Bengio 2010, Understanding the difficulty of training deep
    feedforward networks.

    Args:
        seed: None, or a non-negative integer for a reproducible sequence of draws.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted (EinsumDense passes them).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> keras.layers.Dense(64, kernel_initializer="kit_glorot_normal")
    """

    scheme = (1.0, "fan_avg", "truncated_normal")
    formula = "var = 2 / (fan_in + fan_out), truncated normal"


@keras.saving.register_keras_serializable(package="keras_initkit")
class HeNormal(_NamedScheme):
    """He (Kaiming) normal initializer.

    var = 2 / fan_in, truncated normal. Truncated at +-2 underlying std, the std
    corrected by 1 / 0.87962566103423978 so the variance is exact.

    Paper: He et al. 2015, Delving Deep into Rectifiers.

    Args:
        seed: None, or a non-negative integer for a reproducible sequence of draws.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted (EinsumDense passes them).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> keras.layers.Dense(64, kernel_initializer="kit_he")
    """

    scheme = (2.0, "fan_in", "truncated_normal")
    formula = "var = 2 / fan_in, truncated normal"


@keras.saving.register_keras_serializable(package="keras_initkit")
class HeUniform(_NamedScheme):
    """He (Kaiming) uniform initializer.

    U(-l, l), l = sqrt(6 / fan_in). Variance 2 / fan_in.

    Paper: He et al. 2015, Delving Deep into Rectifiers.

    Args:
        seed: None, or a non-negative integer for a reproducible sequence of draws.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted (EinsumDense passes them).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> keras.layers.Dense(64, kernel_initializer="kit_he_uniform")
    """

    scheme = (2.0, "fan_in", "uniform")
    formula = "U(-l, l), l = sqrt(6 / fan_in)"


@keras.saving.register_keras_serializable(package="keras_initkit")
class LecunNormal(_NamedScheme):
    """LeCun normal initializer.

    var = 1 / fan_in, truncated normal. Truncated at +-2 underlying std, the std
    corrected by 1 / 0.87962566103423978 so the variance is exact.

    Paper: LeCun et al. 1998, Efficient BackProp; Klambauer et al. 2017 for SELU.

    Args:
        seed: None, or a non-negative integer for a reproducible sequence of draws.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted (EinsumDense passes them).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> keras.layers.Dense(64, kernel_initializer="kit_lecun_normal")
    """

    scheme = (1.0, "fan_in", "truncated_normal")
    formula = "var = 1 / fan_in, truncated normal"


@keras.saving.register_keras_serializable(package="keras_initkit")
class LecunUniform(_NamedScheme):
    """LeCun uniform initializer.

    U(-l, l), l = sqrt(3 / fan_in). Variance 1 / fan_in.

    Paper: LeCun et al. 1998, Efficient BackProp; Klambauer et al. 2017 for SELU.

    Args:
        seed: None, or a non-negative integer for a reproducible sequence of draws.
        input_axes, output_axes: Optional lists of axes that override how the
            fans are counted (EinsumDense passes them).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of that shape and float dtype.

    Example:
    >>> keras.layers.Dense(64, kernel_initializer="kit_lecun_uniform")
    """

    scheme = (1.0, "fan_in", "uniform")
    formula = "U(-l, l), l = sqrt(3 / fan_in)"
