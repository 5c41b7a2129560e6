"""Structured schemes: identity/Dirac, delta-orthogonal, convolution-aware, ICNR, sparse.

Convolution kernels follow Keras' layout `(*spatial, in_channels, out_channels)`.
"""
import math
import numbers

import keras
import numpy as np
from keras import ops

from ..fans import compute_fans
from .base import (
    KitInitializer,
    check_choice,
    check_number,
    check_representable,
    check_spread,
    float_work_dtype,
)
from .orthogonal import check_orthogonal_gain, orthogonal_matrix


def _centre_tap(matrix, spatial):
    """Places a `(in, out)` matrix at the centre of an odd `spatial` kernel, zeros elsewhere."""
    k = len(spatial)
    matrix = ops.reshape(matrix, (1,) * k + tuple(matrix.shape))
    return ops.pad(matrix, [(s // 2, s // 2) for s in spatial] + [(0, 0), (0, 0)])


def check_groups(groups):
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"`groups` must be an integer >= 1 (the `groups` of the grouped "
                         f"convolution); received groups={groups!r}.")
    return int(groups)


def _grouped(blocks):
    """`(groups, in, out_per_group)` blocks side by side: `(in, groups * out_per_group)`.

    Keras' grouped kernel is `(*spatial, in / groups, out)`, and output channel
    `g * out_per_group + j` reads the g-th group of input channels.
    """
    groups, rows, cols = blocks.shape
    return ops.reshape(ops.transpose(blocks, (1, 0, 2)), (rows, groups * cols))


class _CentreTapScheme(KitInitializer):
    """A scheme that puts a matrix at the centre tap of a conv kernel: every spatial size odd,
    one matrix per group of a grouped convolution."""

    groups = 1

    def check_shape(self, shape):
        super().check_shape(shape)
        even = [s for s in shape[:-2] if s % 2 == 0]
        if len(shape) >= 3 and even:
            raise ValueError(
                f"{type(self).__name__} puts its matrix at the centre tap, which needs an odd "
                f"size on every spatial axis; received kernel shape {shape} with spatial sizes "
                f"{shape[:-2]}."
            )
        if shape[-1] % self.groups:
            raise ValueError(
                f"{type(self).__name__}(groups={self.groups}) needs the output channels "
                f"(the last axis) divisible by groups; received kernel shape {shape}.")


@keras.saving.register_keras_serializable(package="keras_initkit")
class Identity(_CentreTapScheme):
    """Identity matrix times `gain`; for a conv kernel, the Dirac (centre-tap) kernel.

    Rank 2: `W[i, i] = gain` for `i < min(rows, cols)`, zeros elsewhere, as
    `torch.nn.init.eye_`. Rank 3 or more `(*spatial, in, out)`: the centre tap
    is that matrix and every other tap is zero, so the convolution passes its
    input through unchanged, as `torch.nn.init.dirac_`. Every spatial size must
    be odd. With `groups=g` (a grouped convolution, kernel `(*spatial, in / g,
    out)`), each group's `(in / g, out / g)` block is the identity, which is
    `torch.nn.init.dirac_(w, groups=g)` in Keras' layout.

    Args:
        gain: Positive multiplier.
        groups: The convolution's `groups`, an integer >= 1 dividing the
            output channels.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 2 or more.

    Example:
    >>> keras.layers.Conv2D(16, 3, padding="same", kernel_initializer="kit_identity")
    """

    formula = "W = gain * I (centre tap of a conv kernel)"
    random = False
    min_rank = 2

    def __init__(self, gain=1.0, groups=1):
        super().__init__()
        self.gain = check_number("gain", gain, positive=True)
        self.groups = check_groups(groups)

    def generate(self, shape, dtype):
        check_representable("gain", self.gain, dtype)
        eye = ops.eye(shape[-2], shape[-1] // self.groups, dtype=dtype)
        if self.groups > 1:
            eye = ops.tile(eye, (1, self.groups))
        if self.gain != 1.0:  # the default needs no second pass over the tensor
            # ops.full, not ops.cast: a Python float cast goes through float32 first, which
            # would round a float64 gain to float32's 7 digits.
            eye = eye * ops.full((), self.gain, dtype=dtype)
        return eye if len(shape) == 2 else _centre_tap(eye, shape[:-2])

    def get_config(self):
        return {"gain": self.gain, "groups": self.groups}


@keras.saving.register_keras_serializable(package="keras_initkit")
class DeltaOrthogonal(_CentreTapScheme):
    """Orthogonal centre tap, zeros elsewhere (Xiao et al. 2018, Dynamical Isometry and
    a Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional
    Neural Networks).

    For a kernel `(*spatial, in, out)` the centre tap is a Haar-orthogonal
    `(in, out)` matrix times `gain`: `H^T H = gain^2 I` when `out <= in`, and
    `H H^T = gain^2 I` when `out > in` (the paper takes `out >= in`). Every
    spatial size must be odd.

    Args:
        gain: Positive multiplier (the paper uses 1 for tanh at criticality;
            `keras_initkit.gain("relu")` for ReLU).
        groups: The convolution's `groups`, an integer >= 1 dividing the
            output channels: each group's centre tap is orthogonal on its own.
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 3 or more.

    Example:
    >>> keras.layers.Conv2D(64, 3, padding="same", kernel_initializer="kit_delta_orthogonal")
    """

    formula = "centre tap H, H^T H = gain^2 I; other taps 0"
    min_rank = 3

    def __init__(self, gain=1.0, groups=1, seed=None):
        super().__init__(seed)
        self.gain = check_number("gain", gain, positive=True)
        self.groups = check_groups(groups)

    def generate(self, shape, dtype):
        cols = shape[-1] // self.groups
        check_orthogonal_gain(self.gain, shape[-2], cols, dtype)
        if self.groups == 1:
            h = orthogonal_matrix(shape[-2], cols, dtype, self.next_seed(), self.gain)
        else:
            h = _grouped(orthogonal_matrix(shape[-2], cols, dtype, self.next_seed(), self.gain,
                                           batch=(self.groups,)))
        return _centre_tap(h, shape[:-2])

    def get_config(self):
        return {"gain": self.gain, "groups": self.groups, "seed": self._seed}


ZERO_SCALES = ("paper", "orthonormal")


def hadamard_block(rows, cols):
    """The top-left `(rows, cols)` block of the Sylvester-Hadamard matrix of size 2^m >= both.

    Entry (i, j) is (-1)^popcount(i & j), which is `scipy.linalg.hadamard` without
    building the whole 2^m square.
    """
    bits = np.bitwise_and(np.arange(rows)[:, None], np.arange(cols)[None, :])
    parity = np.zeros(bits.shape, dtype=np.int64)
    while bits.any():
        parity ^= bits & 1
        bits = bits >> 1
    return 1.0 - 2.0 * parity


@keras.saving.register_keras_serializable(package="keras_initkit")
class ZerO(_CentreTapScheme):
    """ZerO initialization: only zeros, ones and a scaled Hadamard block (Zhao et al. 2022,
    ZerO Initialization: Initializing Neural Networks with only Zeros and Ones).

    Algorithm 1 of the paper, for a layer from `n` inputs to `p` outputs:

    - `p <= n`: the partial identity, `W[i, i] = 1` for `i < p` (the square
      case is the identity);
    - `p > n`: `c * H_m[:n, :p]`, with `H_m` the Sylvester-Hadamard matrix of
      size `2^m`, `m = ceil(log2(p))`, and `c = 2^(-(m - 1) / 2)`.

    Keras' layout `(n, p)` is the transpose of the paper's `(p, n)`; the
    Hadamard matrix is symmetric, so the block is read off it directly. The
    authors' MNIST notebook scales the Hadamard block by `2^(-m / 2)` (an
    orthonormal Hadamard matrix), a factor sqrt(2) below the paper's `c`:
    `hadamard_scale="orthonormal"` gives that. A conv kernel `(*spatial, n,
    p)` gets the matrix at its centre tap and zeros elsewhere (every spatial
    size odd). Nothing is random: the scheme breaks symmetry through the
    Hadamard signs, and the paper pairs it with zero-initialized residual
    branches (Algorithm 2), which `reinitialize` recipes provide.

    Args:
        hadamard_scale: `"paper"` (c = 2^(-(m-1)/2), default) or
            `"orthonormal"` (2^(-m/2), the authors' notebook).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 2 or more.

    Example:
    >>> keras.layers.Dense(256, kernel_initializer="kit_zero_init")
    """

    formula = "partial identity if out <= in, else c * Hadamard[:in, :out], c = 2^(-(m-1)/2)"
    random = False
    min_rank = 2

    def __init__(self, hadamard_scale="paper"):
        super().__init__()
        self.hadamard_scale = check_choice("hadamard_scale", hadamard_scale, ZERO_SCALES)

    def generate(self, shape, dtype):
        rows, cols = shape[-2], shape[-1]
        if cols <= rows:
            matrix = ops.eye(rows, cols, dtype=dtype)
        else:
            m = math.ceil(math.log2(cols))
            c = 2.0 ** (-(m - 1) / 2 if self.hadamard_scale == "paper" else -m / 2)
            check_representable(f"the Hadamard factor c for shape {shape}", c, dtype)
            matrix = ops.convert_to_tensor(c * hadamard_block(rows, cols), dtype=dtype)
        return matrix if len(shape) == 2 else _centre_tap(matrix, shape[:-2])

    def get_config(self):
        return {"hadamard_scale": self.hadamard_scale}


def _inverse_rfft_matrix(spatial):
    """The real matrix that maps the real Fourier coefficients of a kernel to its taps.

    Row j is `irfftn` of the j-th unit coefficient array (of the `rfftn` shape
    of the kernel). It depends on the kernel size alone, so the random part of
    the scheme stays in `keras.ops` and runs on any backend.
    """
    fourier_shape = tuple(spatial[:-1]) + (spatial[-1] // 2 + 1,)
    size = math.prod(fourier_shape)
    units = np.eye(size).reshape((size,) + fourier_shape)
    axes = tuple(range(1, len(spatial) + 1))
    return np.fft.irfftn(units, s=spatial, axes=axes).reshape(size, -1)


@keras.saving.register_keras_serializable(package="keras_initkit")
class ConvolutionAware(KitInitializer):
    """Convolution-aware initialization (Aghajanyan 2017, Convolution Aware
    Initialization), following keras-contrib's `ConvolutionAware`.

    For each output filter, the `in` channel kernels get real Fourier
    coefficients (of the kernel's `rfftn` shape) that are orthonormal rows
    of Haar-orthogonal matrices, in blocks when there are more channels than
    coefficients; keras-contrib drew its rows as singular vectors of a
    symmetrized Gaussian matrix, another orthonormal basis. `irfftn` turns the
    coefficients into taps; as in keras-contrib, real coefficients give
    circularly even kernels. Gaussian noise of std `eps_std` is added to every
    tap, and the kernel is multiplied by one factor so that its sample
    variance is exactly `2 / fan_in` (He). A 1-tap kernel has a single
    coefficient and gets Gaussian values; a rank-2 shape gets an orthogonal
    matrix with the same variance, as in keras-contrib.

    Args:
        eps_std: Std of the noise added to the taps, >= 0 (keras-contrib: 0.05).
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 2 to 5.

    Example:
    >>> keras.layers.Conv2D(32, 3, kernel_initializer="kit_convolution_aware")
    """

    formula = "orthonormal real Fourier coefficients per filter, irfftn, var = 2 / fan_in"
    min_rank = 2

    def __init__(self, eps_std=0.05, seed=None):
        super().__init__(seed)
        self.eps_std = check_number("eps_std", eps_std, non_negative=True)

    def check_shape(self, shape):
        super().check_shape(shape)
        if len(shape) > 5:
            raise ValueError(
                f"ConvolutionAware handles 1D, 2D and 3D kernels (rank 3 to 5) and rank-2 "
                f"matrices; received shape={shape} of rank {len(shape)}."
            )

    def generate(self, shape, dtype):
        work = float_work_dtype(dtype)
        if len(shape) == 2:
            raw = orthogonal_matrix(shape[0], shape[1], work, self.next_seed())
        else:
            raw = self._fourier_kernel(shape, work)
        fan_in, _ = compute_fans(shape)
        # One factor for the whole kernel (no centering), as keras-contrib; np.var is exact.
        # A one-entry kernel has variance 0: its mean square sets the size instead, so the
        # entry is +-sqrt(2 / fan_in) rather than 1e15 (inf in float16).
        var = ops.var(raw)
        moment = ops.where(var > 0, var, ops.mean(ops.square(raw)))
        scale = ops.sqrt((2.0 / fan_in) / ops.maximum(moment, 1e-30))
        return ops.cast(raw * scale, dtype)

    def _fourier_kernel(self, shape, work):
        spatial, channels, filters = shape[:-2], shape[-2], shape[-1]
        inverse = _inverse_rfft_matrix(spatial)
        size = inverse.shape[0]
        if size == 1:
            coefficients = keras.random.normal((filters, channels, 1), dtype=work,
                                               seed=self.next_seed())
        else:
            blocks = channels // size + 1
            bases = orthogonal_matrix(size, size, work, self.next_seed(), batch=(filters, blocks))
            coefficients = ops.reshape(bases, (filters, blocks * size, size))[:, :channels]
        taps = ops.matmul(coefficients, ops.convert_to_tensor(inverse, dtype=work))
        if self.eps_std:
            # The kernel is rescaled afterwards, so only the ratio noise / taps matters: a
            # large eps_std divides the taps instead, and nothing overflows (1e308 would).
            noise_std = min(self.eps_std, 1.0)
            if self.eps_std > 1.0:
                taps = taps * (1.0 / self.eps_std)
            taps = taps + keras.random.normal(ops.shape(taps), stddev=noise_std, dtype=work,
                                              seed=self.next_seed())
        taps = ops.reshape(taps, (filters, channels) + tuple(spatial))
        k = len(spatial)
        return ops.transpose(taps, tuple(range(2, 2 + k)) + (1, 0))

    def get_config(self):
        return {"eps_std": self.eps_std, "seed": self._seed}


@keras.saving.register_keras_serializable(package="keras_initkit")
class ICNR(KitInitializer):
    """ICNR: initialization for sub-pixel convolution that starts as nearest-neighbour
    upsampling, free of checkerboard artifacts (Aitken et al. 2017, Checkerboard
    artifact free sub-pixel convolution).

    For a kernel `(*spatial, in, out)` followed by `depth_to_space` with block
    `scale` over `d` spatial axes, `out = out0 * scale^d`. A sub-kernel
    `(*spatial, in, out0)` is drawn from `initializer` and tiled `scale^d`
    times along the output axis, matching the channel order of Keras/TF
    `depth_to_space` (`(i * scale + j) * out0 + c`), so every output pixel of
    a block starts equal.

    Args:
        scale: The upsampling factor, an integer >= 1.
        initializer: The scheme for the sub-kernel, any initializer identifier
            (default `"kit_he_normal"`, as in the paper).

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 3 or more whose last
        axis is divisible by `scale^d`.

    Example:
    >>> conv = keras.layers.Conv2D(3 * 2**2, 3, padding="same",
    ...                            kernel_initializer=ICNR(scale=2))
    >>> # then: tf.nn.depth_to_space(conv(x), 2)
    """

    formula = "sub-kernel from `initializer`, tiled scale^d times on the output axis"
    min_rank = 3

    def __init__(self, scale=2, initializer="kit_he_normal"):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
            raise ValueError(f"`scale` must be an integer >= 1; received scale={scale!r}.")
        self.scale = int(scale)
        try:
            self.initializer = keras.initializers.get(initializer)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"`initializer` could not be resolved: received initializer={initializer!r} "
                f"({error})."
            ) from None
        # Keras' get() passes None and callables through and makes an array a constant
        # function: none of them has a config to save, so only an Initializer is taken.
        if not isinstance(self.initializer, keras.initializers.Initializer):
            raise TypeError(
                "`initializer` must be an initializer name, config or instance; received "
                f"initializer={initializer!r}. Wrap a function with "
                "keras_initkit.register_initializer to use it here."
            )
        if not isinstance(self.initializer, KitInitializer):
            # A Keras initializer's seed starts this instance's sequence of re-seeded draws,
            # so a seeded ICNR(2, HeNormal(seed=3)) draws alike in every process.
            seed = self.initializer.get_config().get("seed")
            if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
                self._seed = int(seed)

    def check_shape(self, shape):
        super().check_shape(shape)
        blocks = self.scale ** (len(shape) - 2)
        if shape[-1] % blocks:
            raise ValueError(
                f"ICNR with scale={self.scale} on a {len(shape) - 2}D kernel needs the output "
                f"channels divisible by scale^{len(shape) - 2} = {blocks}; received shape={shape}."
            )

    def generate(self, shape, dtype):
        blocks = self.scale ** (len(shape) - 2)
        sub = self._fresh_initializer()(shape[:-1] + (shape[-1] // blocks,), dtype=dtype)
        return ops.tile(sub, (1,) * (len(shape) - 1) + (blocks,))

    def _fresh_initializer(self):
        """Keras' built-in random initializers repeat their draws; re-seed them per call."""
        inner = self.initializer
        if isinstance(inner, KitInitializer) or "seed" not in inner.get_config():
            return inner
        return type(inner).from_config({**inner.get_config(), "seed": self.next_seed()})

    def get_config(self):
        return {"scale": self.scale,
                "initializer": keras.initializers.serialize(self.initializer)}


@keras.saving.register_keras_serializable(package="keras_initkit")
class Sparse(KitInitializer):
    """Sparse initialization (Martens 2010, Deep learning via Hessian-free optimization).

    Each column (one output unit's incoming weights, on the flattening
    `(prod(shape[:-1]), shape[-1])`) gets exactly `ceil(sparsity * rows)`
    zeros at random rows; the other entries are N(0, stddev^2). It is
    `torch.nn.init.sparse_`'s rule on the same 2-D array; as a Keras kernel is
    `(in, out)` and a torch weight `(out, in)`, each output unit here gets its
    fixed number of non-zero inputs (Martens' intent), where torch's on a
    `Linear` weight fixes the zeros per input.

    Args:
        sparsity: Fraction of zeros per column, in [0, 1). Default 0.9, close
            to Martens' 15 non-zero inputs per unit for layers of ~150 inputs.
        stddev: Std of the non-zero entries, > 0 (torch's default 0.01).
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 2 or more.

    Example:
    >>> keras.layers.Dense(128, kernel_initializer=Sparse(sparsity=0.8, stddev=0.1))
    """

    formula = "ceil(sparsity * rows) zeros per column, others N(0, stddev^2)"
    min_rank = 2

    def __init__(self, sparsity=0.9, stddev=0.01, seed=None):
        super().__init__(seed)
        self.sparsity = check_number("sparsity", sparsity)
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"`sparsity` must be in [0, 1); received sparsity={sparsity}.")
        self.stddev = check_number("stddev", stddev, positive=True)

    def generate(self, shape, dtype):
        check_spread("stddev", self.stddev, 6 * self.stddev, dtype)
        work = float_work_dtype(dtype)
        rows, cols = math.prod(shape[:-1]), shape[-1]
        zeros = math.ceil(self.sparsity * rows)
        values = keras.random.normal((rows, cols), stddev=self.stddev, dtype=work,
                                     seed=self.next_seed())
        # The rank of a uniform key within its column picks exactly `zeros` rows at random.
        keys = keras.random.uniform((rows, cols), dtype="float32", seed=self.next_seed())
        ranks = ops.argsort(ops.argsort(keys, axis=0), axis=0)
        values = ops.where(ranks < zeros, ops.zeros_like(values), values)
        return ops.cast(ops.reshape(values, shape), dtype)

    def get_config(self):
        return {"sparsity": self.sparsity, "stddev": self.stddev, "seed": self._seed}
