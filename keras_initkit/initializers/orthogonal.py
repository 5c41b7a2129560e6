"""Orthogonal initialization (Saxe et al. 2014), and the Haar sampler it rests on."""
import math

import keras
import numpy as np
from keras import ops

from .base import KitInitializer, check_number, check_spread, float_work_dtype

# Above this many entries, building Q panel by panel from matmuls beats one Householder
# sweep (2.4x faster for 4096^2 on a 2-core CPU) and needs one copy of Q at peak, not three.
PANEL_MIN_ENTRIES = 2**21
# Widest panel: wide enough for fast matmuls, narrow enough to keep the working set small.
PANEL_MAX_WIDTH = 1024


def orthogonal_matrix(rows, cols, dtype, seed, gain=1.0, batch=()):
    """A `(*batch, rows, cols)` matrix with orthonormal rows or columns, times `gain`.

    It is the Q factor of a Gaussian matrix whose R factor has a positive
    diagonal: that Q is Haar-distributed (Mezzadri 2007), not just orthogonal.
    """
    work = float_work_dtype(dtype)
    tall = rows >= cols
    big, small = (rows, cols) if tall else (cols, rows)
    # Below ~2^18 entries the Householder sweep is cheaper than CholeskyQR2's op count.
    tall_enough = small >= 16 and big >= 4 * small and big * small >= 2**18
    if not batch and (tall_enough or big * small >= PANEL_MIN_ENTRIES):
        def draw(index, width):
            panel_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            return keras.random.normal((big, width), dtype=work, seed=panel_seed)

        panels = _haar_panels(draw, big, small, gain)
        if not tall:  # transposing panel by panel keeps the peak at one copy of Q
            panels = [ops.transpose(p) for p in panels]
        q = panels[0] if len(panels) == 1 else ops.concatenate(panels, axis=1 if tall else 0)
    else:
        q, r = ops.qr(keras.random.normal((*batch, big, small), dtype=work, seed=seed))
        signs = ops.sign(ops.diagonal(r, axis1=-2, axis2=-1))
        q = q * ops.expand_dims(signs * gain, -2)  # the sign fix and the gain in one pass
        if not tall:
            q = ops.swapaxes(q, -1, -2)
    return ops.cast(q, dtype)


def _haar_panels(draw, rows, cols, gain):
    """`gain` times the Q of a Gaussian `(rows, cols)` matrix, `rows >= cols`, as column panels.

    `draw(index, width)` returns the next `(rows, width)` panel of the Gaussian matrix.

    Block Gram-Schmidt with reorthogonalization (BCGS2, Barlow & Smoktunowicz 2013)
    on a Gaussian matrix drawn one panel at a time. Each panel is projected off the
    panels before it, orthonormalized, projected again and orthonormalized again
    ("twice is enough"), which keeps W^T W = I to working precision. Every
    orthonormalization has a positive-diagonal R, so the columns are those of the
    sign-fixed Householder Q: the same Haar law.

    A panel is at most a quarter as wide as the dimensions still free, so that the
    projected Gaussian panel is well conditioned (condition number <= 3) and
    CholeskyQR is exact to working precision; the last few columns, where that cannot
    hold, go through one Householder QR.
    """
    panels, done = [], 0

    def project(p):
        # The panels already carry the gain, so the small factor takes 1 / gain^2.
        for q in panels:
            p = p - ops.matmul(q, ops.einsum("ki,kj->ij", q, p) / gain**2)
        return p

    while done < cols:
        width = min(cols - done, PANEL_MAX_WIDTH, (rows - done) // 4)
        householder = width < min(64, cols - done)
        if householder:
            width = cols - done
        p = project(draw(len(panels), width))
        if householder:
            q, r = ops.qr(p)
            p = q * ops.sign(ops.diagonal(r))
            del q, r
        else:
            p = _cholesky_step(p)
        panels.append(_cholesky_step(project(p), gain))
        done += width
    return panels


def _cholesky_step(a, gain=1.0):
    """One CholeskyQR step: `gain * A R^-1` with `R = chol(A^T A)^T` (a positive diagonal)."""
    chol = ops.cholesky(ops.einsum("ki,kj->ij", a, a))  # no transposed copy of a
    r_inverse = ops.solve_triangular(chol, ops.eye(a.shape[-1], dtype=a.dtype), lower=True)
    return ops.matmul(a, ops.transpose(r_inverse) * gain)


def check_orthogonal_gain(gain, rows, cols, dtype):
    """An orthonormal vector of length n has entries of size ~1/sqrt(n), none above 1:
    `gain` times them must neither overflow `dtype` nor fall below its normal range."""
    check_spread("gain", gain / math.sqrt(max(rows, cols)), gain, dtype)


@keras.saving.register_keras_serializable(package="keras_initkit")
class Orthogonal(KitInitializer):
    """Orthogonal matrix times `gain` (Saxe et al. 2014, Exact solutions to the
    nonlinear dynamics of learning in deep linear neural networks).

    The shape is flattened to `(prod(shape[:-1]), shape[-1])`, so conv kernels
    work. With `rows >= cols` the columns are orthonormal, `W^T W = gain^2 I`;
    otherwise the rows are, `W W^T = gain^2 I`. Sampled from the Haar measure:
    QR of a Gaussian matrix with the sign of diag(R) folded into Q.

    Args:
        gain: Positive multiplier, e.g. `keras_initkit.gain("relu")`.
        seed: None, or a non-negative integer for a reproducible sequence of draws.

    Returns:
        Called with `(shape, dtype=None)`: a tensor of rank 2 or more.

    Example:
    >>> keras.layers.LSTM(32, recurrent_initializer="kit_orthogonal")
    """

    formula = "W^T W = gain^2 I on the (prod(shape[:-1]), shape[-1]) flattening"
    min_rank = 2

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = check_number("gain", gain, positive=True)

    def generate(self, shape, dtype):
        rows = math.prod(shape[:-1])
        check_orthogonal_gain(self.gain, rows, shape[-1], dtype)
        q = orthogonal_matrix(rows, shape[-1], dtype, self.next_seed(), self.gain)
        return ops.reshape(q, shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self._seed}
