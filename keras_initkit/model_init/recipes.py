"""Whole-model recipes of residual networks and transformers, and the audit against them.

A recipe gives every weight of a model a draw by the role it plays (read off
the traced graph by `residual.structure_of`): the output projection of a
residual branch, an embedding, the readout, a normalization's gain...

| recipe | rule | paper | checked against |
|---|---|---|---|
| `gpt2` | kernels and embeddings N(0, 0.02^2), untruncated; each residual branch's output kernel N(0, (0.02 / sqrt(L))^2), L the number of residual branches (2 per block: 2 * n_layer) | Radford et al. 2019 | karpathy/nanoGPT `_init_weights` and its `c_proj` rule |
| `bert` | kernels and embeddings truncated normal, underlying std 0.02 cut at +-2 std (sampled std 0.0176) | Devlin et al. 2019 | google-research/bert `create_initializer` (`tf.truncated_normal_initializer(0.02)`) |
| `vit` | Dense kernels and position embedding N(0, 0.02^2) (timm's `trunc_normal_(std=.02)` cuts at +-2 absolute: untruncated in effect), conv kernels (the patch embedding) LeCun normal, class token N(0, 1e-6^2), readout (head) zero | Dosovitskiy et al. 2021 | timm `VisionTransformer.init_weights` ("jax" mode for the head and the conv) |
| `fixup` | each branch's output kernel zero; its other kernels "auto" (He for ReLU) times L^(-1/(2m-2)), L branches of m kernels; readout zero | Zhang et al. 2019 | hongyi-zhang/Fixup |
| `skipinit` | each branch's last normalization gain zero where it has one (Goyal et al. 2017), else its output kernel zero; the rest "auto" | De & Smith 2020 | |
| `t_fixup` | kernels Glorot uniform; embeddings N(0, 1/d) times (9N)^(-1/4); value and output projections and feed-forward kernels times 0.67 N^(-1/4), N blocks | Huang et al. 2020 | layer6ai-labs/T-Fixup |
| `deepnorm` | kernels Glorot normal; value and output projections and feed-forward kernels Glorot normal with gain beta = (8N)^(-1/4) | Wang et al. 2022 | microsoft/torchscale |

Every recipe sets biases to 0, normalization gains to 1 and shifts to 0, and
keeps moving statistics and weights it has no rule for (listed as `keep`).
"""
import math
import typing
import warnings

import keras
import numpy as np
from keras import ops

from .. import initializers as inits
from ..activations import following_activation
from .residual import structure_of

RECIPES = ("gpt2", "bert", "vit", "fixup", "skipinit", "t_fixup", "deepnorm")
TRUNC = 0.87962566103423978  # std of N(0, 1) cut at +-2
_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)  # ViT's patch embedding


class Draw(typing.NamedTuple):
    """How one weight is drawn: `init` (None keeps it), a label, and the std it should have
    (None when the recipe promises none)."""
    init: typing.Any
    label: str
    std: typing.Optional[float]


KEEP = Draw(None, "keep", None)
ZEROS = Draw(inits.Zeros(), "zeros", 0.0)
ONES = Draw(inits.Ones(), "ones", 1.0)


def _normal(std, label=None):
    return Draw(inits.RandomNormal(stddev=std), label or f"N(0, {std:.4g}^2)", std)


def _scaled_auto(structure, path, factor=1.0):
    """Reinitialize's "auto" draw for a kernel, its std times `factor`."""
    from .reinitialize import auto_initializer  # reinitialize imports this module
    layer = structure.owner[path]
    name, shape = path.rsplit("/", 1)[-1], tuple(structure.variables[path].shape)
    init, label, _ = auto_initializer(layer, name, shape, orthogonal=False,
                                      activation=following_activation(layer))
    if factor == 1.0:
        return Draw(init, label, math.sqrt(init.variance(shape)))
    config = init.get_config()
    init = inits.VarianceScaling.from_config({**config, "scale": config["scale"] * factor**2})
    return Draw(init, f"{label} x {factor:.4g}", math.sqrt(init.variance(shape)))


def _glorot(structure, path, distribution, gain=1.0):
    from ..fans import kernel_axes
    name, shape = path.rsplit("/", 1)[-1], tuple(structure.variables[path].shape)
    axes = kernel_axes(structure.owner[path], name, shape) or (None, None)  # EinsumDense's fans
    init = inits.VarianceScaling(scale=gain**2, mode="fan_avg", distribution=distribution,
                                 input_axes=axes[0], output_axes=axes[1])
    label = f"glorot_{distribution}" + (f" x {gain:.4g}" if gain != 1.0 else "")
    return Draw(init, label, math.sqrt(init.variance(shape)))


def _common(role):
    """Biases, normalization weights, statistics: the same in every recipe."""
    return {"bias": ZEROS, "norm_scale": ONES, "norm_shift": ZEROS,
            "norm_statistic": KEEP, "other": KEEP}.get(role)


def plan(structure, recipe):
    """`path -> Draw` for every weight of the model under `recipe`."""
    roles = structure.roles()
    branches = structure.branches
    n_branches = max(1, len(branches))
    n_blocks = max(1, len(structure.attention) or n_branches // 2)
    attention_vo = {p for a in structure.attention for p in a.value + a.output}
    attention_out = {p for a in structure.attention for p in a.output}
    feed_forward = {p for b in branches if not set(b.output) & attention_out
                    for p in b.inner + b.output} if structure.attention else set()
    drawn = {}
    for path, role in roles.items():
        common = _common(role)
        if common is not None:
            drawn[path] = common
            continue
        if recipe == "gpt2":
            std = 0.02 / math.sqrt(n_branches) if role == "residual_out" else 0.02
            drawn[path] = _normal(std)
        elif recipe == "bert":
            drawn[path] = Draw(inits.TruncatedNormal(stddev=0.02 * TRUNC),
                               "truncated normal 0.02, cut at +-2 std", 0.02 * TRUNC)
        elif recipe == "vit":
            if role == "readout":
                drawn[path] = ZEROS
            elif role == "class_token":
                drawn[path] = _normal(1e-6)
            elif isinstance(structure.owner.get(path), _CONVS) and role == "kernel":
                shape = tuple(structure.variables[path].shape)
                init = inits.VarianceScaling(1.0, "fan_in", "truncated_normal")
                drawn[path] = Draw(init, "lecun_normal", math.sqrt(init.variance(shape)))
            else:
                drawn[path] = _normal(0.02)
        elif recipe in ("fixup", "skipinit"):
            drawn[path] = ZEROS if recipe == "fixup" and role == "readout" else \
                _scaled_auto(structure, path) if role in (
                    "kernel", "residual_inner", "residual_out", "shortcut", "readout") else KEEP
        elif recipe in ("t_fixup", "deepnorm"):
            drawn[path] = _transformer(structure, path, role, recipe, n_blocks,
                                       path in attention_vo or path in feed_forward)
        else:
            raise ValueError(f"unknown recipe {recipe!r}")
    if recipe == "fixup":
        for branch in branches:
            m = len(branch.inner) + len(branch.output)
            factor = n_branches ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0
            for path in branch.inner:
                drawn[path] = _scaled_auto(structure, path, factor)
            for path in branch.output:
                drawn[path] = ZEROS
    if recipe == "skipinit":
        for branch in branches:
            for path in (branch.norms[-1:] or branch.output):
                drawn[path] = ZEROS
    return drawn


def _transformer(structure, path, role, recipe, n_blocks, scaled):
    if role in ("embedding", "position_embedding", "class_token"):
        if recipe == "deepnorm":
            return KEEP
        width = structure.variables[path].shape[-1]
        return _normal(width**-0.5 * (9 * n_blocks) ** -0.25,
                       f"N(0, 1/d) x (9N)^(-1/4), d={width}, N={n_blocks}")
    if role not in ("kernel", "residual_inner", "residual_out", "shortcut", "readout"):
        return KEEP
    if recipe == "t_fixup":
        return _glorot(structure, path, "uniform", 0.67 * n_blocks**-0.25 if scaled else 1.0)
    return _glorot(structure, path, "normal", (8 * n_blocks) ** -0.25 if scaled else 1.0)


def check_recipe(recipe):
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ValueError(f"`recipe` must be one of {', '.join(RECIPES)}; received "
                         f"recipe={recipe!r}.")
    return recipe


def warn_if_unfit(model, structure, recipe):
    """Warns when `model` lacks what `recipe` is for: residual branches for Fixup and
    SkipInit, attention for the transformer recipes. Their weights would then be drawn by
    rules meant for other layers (a CNN's convolutions at GPT-2's 0.02, an MLP's readout
    zeroed by Fixup with nothing scaled)."""
    if recipe in ("fixup", "skipinit"):
        found, kind = structure.branches, "residual networks, and model {!r} has no residual " \
            "branch (x + f(x))"
    else:
        found, kind = structure.attention, "transformers, and model {!r} has no attention " \
            "(a softmax over scores)"
    if not found:
        warnings.warn(
            f"recipe={recipe!r} is for {kind.format(model.name)} that its traced graph "
            "shows; its weights were drawn by the recipe's rules "
            "for other layers, which is not the recipe. For such a model use "
            "reinitialize(model, 'auto') or a scheme.", stacklevel=4)  # the user's call


def apply_recipe(model, recipe, draws, rows, x=None):
    """Draws every weight of `model` by `recipe`; appends one row per weight to `rows`."""
    structure = structure_of(model, x)
    warn_if_unfit(model, structure, recipe)
    planned = plan(structure, recipe)
    for path, draw in planned.items():
        variable = structure.variables[path]
        if draw.init is not None:
            variable.assign(draws.fresh(draw.init)(tuple(variable.shape), dtype=variable.dtype))
        rows.append(layer=path.rsplit("/", 1)[0], weight=path.rsplit("/", 1)[-1],
                    scheme=draw.label, role=structure.role(path), std=draw.std)
    return structure


def audit(model, recipe, x=None, sigmas=6.0):
    """Compares each weight of a model with what a recipe draws for it.

    For each weight the recipe promises a std for, the root mean square of the
    weight (its std, for the zero-mean laws of the recipes) is set against that
    std. A zero or one promise (biases, gains) must hold exactly;
    a random one within `sigmas` standard errors of the RMS of n draws,
    `std * sqrt((kurtosis - 1) / (4 n))` with a normal's kurtosis 3 (a
    truncated or uniform law has less, so the band is, if anything, wide).

    Args:
        model: A built `keras.Model`.
        recipe: One of `RECIPES`.
        x: Optional sample input for a model without symbolic inputs.
        sigmas: Standard errors allowed, > 0.

    Returns:
        A `Rows` table with `weight`, `role`, `expected_std`, `measured_std`,
        `n` and `differs`; `.differing` lists the paths that differ.

    Example:
    >>> backbone = keras_hub.models.GPT2Backbone(vocabulary_size=1000, num_layers=4,
    ...     num_heads=4, hidden_dim=128, intermediate_dim=512, max_sequence_length=64)
    >>> keras_initkit.audit(backbone, "gpt2").differing  # keras-hub skips the 1/sqrt(2L)
    """
    from .reinitialize import check_model
    from .report import Rows
    check_model(model)
    check_recipe(recipe)
    if not (isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool)
            and math.isfinite(sigmas) and sigmas > 0):
        raise ValueError(f"`sigmas` must be a finite number > 0; received sigmas={sigmas!r}.")
    structure = structure_of(model, x)
    found = []
    for path, draw in plan(structure, recipe).items():
        if draw.std is None:
            continue
        value = ops.convert_to_numpy(structure.variables[path]).astype(np.float64)
        n = value.size
        rms = float(np.sqrt(np.mean(value**2))) if n else 0.0
        if not getattr(draw.init, "random", True):  # zeros and ones hold exactly
            differs = not np.array_equal(value, np.full_like(value, draw.std))
        else:
            error = draw.std * math.sqrt(2.0 / (4.0 * max(n, 1)))
            differs = abs(rms - draw.std) > sigmas * error + 1e-7 * draw.std
        found.append(dict(weight=path, role=structure.role(path), expected_std=draw.std,
                          measured_std=rms, n=n, differs=bool(differs)))
    rows = Rows(("weight", "role", "expected_std", "measured_std", "n", "differs"),
                differing=[row["weight"] for row in found if row["differs"]])
    for row in found:
        rows.append(**row)
    return rows
