"""Orthogonal initialization (Saxe et al. 2014), and the Haar sampler it rests on."""
import math

import keras
from keras import ops

from .base import KitInitializer, check_number, float_work_dtype


def orthogonal_matrix(rows, cols, dtype, seed, gain=1.0, batch=()):
    """A `(*batch, rows, cols)` matrix with orthonormal rows or columns, times `gain`.

    QR of a Gaussian matrix, with the columns of Q multiplied by the signs of
    diag(R): that makes Q Haar-distributed (Mezzadri 2007), not just orthogonal.
    The sign and the gain are applied in one multiply.
    """
    work = float_work_dtype(dtype)
    tall = rows >= cols
    big, small = (rows, cols) if tall else (cols, rows)
    a = keras.random.normal((*batch, big, small), dtype=work, seed=seed)
    q, r = ops.qr(a)
    signs = ops.sign(ops.diagonal(r, axis1=-2, axis2=-1))
    q = q * ops.expand_dims(signs * gain, -2)
    if not tall:
        q = ops.swapaxes(q, -1, -2)
    return ops.cast(q, dtype)


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
