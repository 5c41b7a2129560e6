"""Mimetic initialization of self-attention (Trockman & Kolter 2023, Mimetic Initialization of
Self-Attention Layers).

Trained attention layers show W_q W_k^T close to a positive multiple of the identity plus
noise (a token attends to tokens like itself) and W_v W_o close to a negative one. Mimetic
initialization starts them there: for each head, W_q W_k^T ~= alpha1 Z1 + beta1 I; over
the layer, W_v W_o ~= alpha2 Z2 - beta2 I, with Z uniform of variance 1 / d. Each target
matrix is factored by its SVD, M = U S V^T, into U S^(1/2) and V S^(1/2); a head of width
k takes the top k components, so its W_q W_k^T is the best rank-k approximation of M.
"""
import warnings

import numpy as np
from keras import ops

from ..initializers.base import check_seed
from .reinitialize import check_model
from .report import Rows
from .residual import structure_of


def _factors(d, alpha, beta, rng):
    """U S^(1/2) and V S^(1/2) of alpha Z + beta I, Z ~ U(+-sqrt(3 / d)) (variance 1 / d)."""
    limit = np.sqrt(3.0 / d)
    m = alpha * rng.uniform(-limit, limit, size=(d, d)) + beta * np.eye(d)
    u, s, vt = np.linalg.svd(m)
    return u * np.sqrt(s), vt.T * np.sqrt(s)


def mimetic(model, alpha1=0.7, beta1=0.7, alpha2=0.4, beta2=0.4, seed=None, x=None):
    """Sets every attention of a model by mimetic initialization, in place.

    The attentions are found in the traced graph (`residual.structure_of`), in
    `keras.layers.MultiHeadAttention` and in keras-hub's attention layers alike:
    query, key and value kernels `(d, heads, head_dim)` and an output kernel
    `(heads, head_dim, d)`, as `EinsumDense` lays them out. Per head, the query
    and key kernels take the top `head_dim` SVD factors of their own
    alpha1 Z1 + beta1 I; the value and output kernels of all heads together
    take the factors of alpha2 Z2 - beta2 I (d x d, heads * head_dim columns).
    The defaults are the paper's (alpha1 = beta1 = 0.7, alpha2 = beta2 = 0.4).
    Other weights are left as they are; an attention whose kernels are laid
    out otherwise (grouped keys, fused projections) is skipped with a warning.

    Args:
        model: A built `keras.Model` holding attention layers.
        alpha1, beta1: Noise and identity weights of W_q W_k^T.
        alpha2, beta2: Noise and (negative) identity weights of W_v W_o.
        seed: None, or an integer for reproducible draws.
        x: A sample input, for a model without symbolic inputs.

    Returns:
        A `Rows` report, one row per attention: `query`, `key`, `value`,
        `output` (kernel paths) and `heads`.

    Raises:
        ValueError: the model has no attention that could be set.

    Example:
    >>> keras_initkit.mimetic(vit_backbone, seed=0)
    """
    check_model(model)
    rng = np.random.default_rng(check_seed(seed))
    structure = structure_of(model, x)
    rows = Rows(("query", "key", "value", "output", "heads"))
    for attention in structure.attention:
        kernels = [structure.variables[p] for p in
                   attention.query_key + attention.value + attention.output]
        shapes = [tuple(k.shape) for k in kernels]
        if len(kernels) != 4 or len(set(shapes[:3])) != 1 or len(shapes[0]) != 3 or \
                shapes[3] != (shapes[0][1], shapes[0][2], shapes[0][0]):
            warnings.warn(f"mimetic: the attention with kernels {[k.path for k in kernels]} "
                          f"(shapes {shapes}) is not laid out as (d, heads, head_dim) x 3 and "
                          "(heads, head_dim, d); left as it is.", stacklevel=2)
            continue
        query, key, value, output = kernels
        d, heads, width = shapes[0]
        q, k = np.empty(shapes[0]), np.empty(shapes[0])
        for h in range(heads):
            left, right = _factors(d, alpha1, beta1, rng)
            q[:, h], k[:, h] = left[:, :width], right[:, :width]
        left, right = _factors(d, alpha2, -beta2, rng)
        columns = min(d, heads * width)
        v, o = np.zeros((d, heads * width)), np.zeros((heads * width, d))
        v[:, :columns], o[:columns] = left[:, :columns], right[:, :columns].T
        for variable, value_ in ((query, q), (key, k), (value, v.reshape(shapes[0])),
                                 (output, o.reshape(shapes[3]))):
            variable.assign(ops.convert_to_tensor(value_, dtype=variable.dtype))
        rows.append(query=query.path, key=key.path, value=value.path, output=output.path,
                    heads=heads)
    if not len(rows):
        raise ValueError(f"mimetic: model {model.name!r} has no attention laid out as "
                         "MultiHeadAttention's (query, key and value (d, heads, head_dim), "
                         "output (heads, head_dim, d)); nothing was set.")
    return rows
