"""Orthogonal initialization (Saxe et al. 2014), and the Haar sampler it rests on."""
import math

import keras
from keras import ops

from .base import KitInitializer, check_number, float_work_dtype


def orthogonal_matrix(rows, cols, dtype, seed, gain=1.0, batch=()):
    """A `(*batch, rows, cols)` matrix with orthonormal rows or columns, times `gain`.

    It is the Q factor of a Gaussian matrix whose R factor has a positive
    diagonal: that Q is Haar-distributed (Mezzadri 2007), not just orthogonal.
    """
    work = float_work_dtype(dtype)
    tall = rows >= cols
    big, small = (rows, cols) if tall else (cols, rows)
    a = keras.random.normal((*batch, big, small), dtype=work, seed=seed)
    # Below ~2^18 entries the Householder sweep is cheaper than CholeskyQR2's op count.
    if not batch and small >= 16 and big >= 4 * small and big * small >= 2**18:
        q = _cholesky_q(a, gain)
    else:
        q, r = ops.qr(a)
        signs = ops.sign(ops.diagonal(r, axis1=-2, axis2=-1))
        q = q * ops.expand_dims(signs * gain, -2)  # the sign fix and the gain in one pass
    if not tall:
        q = ops.swapaxes(q, -1, -2)
    return ops.cast(q, dtype)


def _cholesky_q(a, gain):
    """Q = A R^-1 with R = chol(A^T A)^T, twice (CholeskyQR2, Yamamoto et al. 2015).

    R has a positive diagonal, so this is the same Q as Householder QR with the
    signs fixed, at a fraction of the cost for a tall matrix: two small Gram
    matrices and two matmuls instead of a Householder sweep (6x faster for
    (4608, 512) here), and one extra copy of the matrix at peak instead of
    two. It is used only when rows >= 4 * cols >= 64 and the matrix has 2^18
    entries or more (below that, the sweep is cheaper), where a Gaussian matrix
    has a condition number near (sqrt(rows) + sqrt(cols)) / (sqrt(rows) -
    sqrt(cols)) <= 3 with overwhelming probability, far inside the range
    (up to about 1 / sqrt(eps)) where CholeskyQR2 is accurate to working
    precision.
    """
    n = a.shape[-1]
    for last in (False, True):
        chol = ops.cholesky(ops.einsum("ki,kj->ij", a, a))  # no transposed copy of a
        r_inverse = ops.transpose(ops.solve_triangular(chol, ops.eye(n, dtype=a.dtype),
                                                       lower=True))
        if last:
            r_inverse = r_inverse * gain
        a = ops.matmul(a, r_inverse)
    return a


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
        q = orthogonal_matrix(rows, shape[-1], dtype, self.next_seed(), self.gain)
        return ops.reshape(q, shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self._seed}
