"""A zoo of models whose right diagnosis is known, for tests and benchmarks/zoo.py.

Three families, each a list of `ZooModel` records:

- `APPLICATIONS`: every `keras.applications` constructor, `weights=None` (stock
  initialization), 10 classes, at the smallest input size it allows (32 px; 71 px for
  Xception, 75 px for the Inception models). `expect=None`: they must be judged healthy.
- `HUB`: keras-hub backbones built small from constructor arguments (vocabulary 1000,
  2 layers, hidden 64, 4 heads; images 32 px), random weights with each backbone's own
  initializers and default dropout. `expect=None`.
- `FAILURES`: known-bad models, each with the kind of finding it must raise, plus healthy
  controls built the same way (`expect=None`).

`ZOO` holds them all. A member is cheap to describe and only built when `build()` is
called; `batch(model, seed)` and `labels(model, seed)` are deterministic in `seed`.

    member = by_name("ResNet50")
    model = member.build()
    report = keras_initkit.diagnose(model, member.batch(model, 0),
                                    member.labels(model, 0), loss=member.loss)
"""
from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable, Optional

import keras
import numpy as np

L = keras.layers

IMAGE_BATCH = 8     # images per batch (BatchNormalization sees batch statistics)
TOKEN_BATCH = 4     # sequences per batch for keras-hub backbones
SEQ_LEN = 16        # tokens per sequence
VOCAB = 1000
CLASSES = 10        # classes of the keras.applications heads
MLP_BATCH = 128
DIM = 64            # width of the small transformers
HEADS = 4

# Losses for the "with labels" diagnosis. Objects are module-level so a probe cached on
# `id(loss)` keeps hitting its cache.
SPARSE_CE = "sparse_categorical_crossentropy"  # from_logits=False: for softmax outputs
MSE = "mse"


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One member of the zoo.

    Attributes:
        name: Unique name (the constructor's name for stock models).
        build: `() -> keras.Model`, built, with the member's (stock) initialization. Seeds
            Keras' RNG first, so two builds give the same weights.
        batch: `(model, seed) -> inputs` for `model(...)` and `diagnose(model, ...)`.
        labels: `(model, seed) -> targets`, or None when the member has none.
        loss: The loss for `labels` (a name or a loss object), or None.
        expect: None: must be judged healthy (no vanishing, exploding or nonfinite finding).
            Otherwise the kind of finding it must raise: "vanishing", "exploding", "dead",
            "saturated", "nonfinite", "rank_collapse", "entropy_collapse".
        slow: Takes more than about 3 s to build and diagnose on the 2-core reference VM.
        family: "applications", "keras_hub" or "failure".
        note: Anything a reader of a failing test should know.
    """

    name: str
    build: Callable[[], keras.Model]
    batch: Callable[[keras.Model, int], Any]
    labels: Optional[Callable[[keras.Model, int], Any]] = None
    loss: Any = None
    expect: Optional[str] = None
    slow: bool = False
    family: str = "failure"
    note: str = ""


def _rng(seed, salt=0):
    return np.random.default_rng([int(seed), salt])


# ---------------------------------------------------------------------------------------
# Inputs and targets

def normal_batch(model, seed=0, n=None):
    """N(0, 1) inputs of the model's (single, static) input shape."""
    shape = tuple(model.input_shape[1:])
    n = n or (IMAGE_BATCH if len(shape) == 3 else MLP_BATCH if len(shape) == 1 else TOKEN_BATCH)
    return _rng(seed).normal(size=(n,) + shape).astype("float32")


def pixel_batch(model, seed=0):
    """Images in [0, 255], for models whose graph starts with Rescaling/Normalization."""
    shape = tuple(model.input_shape[1:])
    return _rng(seed).uniform(0.0, 255.0, size=(IMAGE_BATCH,) + shape).astype("float32")


def class_labels(model, seed=0, n=None):
    """Random integer classes for a classifier's last axis (softmax output)."""
    n = n or IMAGE_BATCH
    classes = model.output_shape[-1]
    return _rng(seed, 1).integers(0, classes, size=(n,)).astype("int32")


def _concrete(shape, n, t):
    """A static shape for a symbolic one: batch axis n, unknown sequence axis t."""
    shape = list(shape)
    shape[0] = n
    return tuple(t if s is None else s for s in shape)


def normal_targets(model, seed=0, n=TOKEN_BATCH, t=SEQ_LEN):
    """N(0, 1) targets of the output's shape (a dict for dict outputs, keyed like them)."""
    rng = _rng(seed, 2)
    try:
        outputs = model.output
    except AttributeError:  # a Sequential model keeps its outputs on its last layer
        outputs = model.layers[-1].output
    return keras.tree.map_structure(
        lambda out: rng.normal(size=_concrete(out.shape, n, t)).astype("float32"), outputs)


def mlp_targets(model, seed=0):
    return normal_targets(model, seed, n=MLP_BATCH)


def sequence_targets(model, seed=0):
    return normal_targets(model, seed, n=TOKEN_BATCH)


def image_targets(model, seed=0):
    return normal_targets(model, seed, n=IMAGE_BATCH)


def hub_batch(model, seed=0, n=None, t=SEQ_LEN):
    """Inputs for a keras-hub backbone, from its input names.

    token_ids in [1, vocabulary) with right padding (row 1 has 3 pad tokens, row 3 has 6,
    as id 0 and mask 0), padding_mask, segment_ids (first half 0, second half 1), and
    N(0, 1) images for vision backbones (IMAGE_BATCH of them).
    """
    rng = _rng(seed)
    inputs = model.input if isinstance(model.input, dict) else {None: model.input}
    if n is None:
        n = TOKEN_BATCH if any("ids" in (k or "") for k in inputs) else IMAGE_BATCH
    mask = np.ones((n, t), "int32")
    for row, pads in ((1, 3), (3, 6)):
        if row < n:
            mask[row, t - pads:] = 0
    vocab = getattr(model, "vocabulary_size", None) or getattr(model, "vocab_size", None) or VOCAB
    out = {}
    for key, spec in inputs.items():
        name = key or spec.name
        if "token_ids" in name:
            out[key] = (rng.integers(1, vocab, size=(n, t)) * mask).astype("int32")
        elif "padding_mask" in name:
            out[key] = mask.copy()
        elif "segment_ids" in name:
            seg = np.zeros((n, t), "int32")
            seg[:, t // 2:] = 1
            out[key] = seg * mask
        else:  # images
            out[key] = rng.normal(size=_concrete(spec.shape, n, t)).astype("float32")
    return out[None] if None in out else out


# ---------------------------------------------------------------------------------------
# keras.applications

# Smallest input each constructor accepts (32 unless listed): obtain_input_shape's minimums.
_MIN_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
# Models whose stock graph starts with in-graph preprocessing (Rescaling(1/255),
# Normalization with ImageNet statistics): they are fed what they are built for, [0, 255].
_PIXEL_INPUT = re.compile(r"^(ConvNeXt|EfficientNet|MobileNetV3)")
# Over 3 s to build and diagnose on the 2-core VM (benchmarks/zoo.py, 2026-12-04): every
# application but VGG16/VGG19 (1.8-2.0 s). The first diagnose traces the probe: 3.1 s for
# MobileNet, 5 s for ResNet50, 10-30 s for the big ones.
_FAST_APPS = {"VGG16", "VGG19"}
_APP_NOTES = {
    "VGG16": "No normalization and 13 Glorot/ReLU convolutions: a vanishing warning is "
             "plausible, but it trains as it is; must not be an error.",
    "VGG19": "As VGG16, 16 convolutions.",
    "ConvNeXtTiny": "LayerScale gamma starts at 1e-6: residual branches are tiny on purpose; "
                    "the residual sum is `inputs + branch`, an ops.add node, not a Layer.",
    "InceptionResNetV2": "Residuals are CustomScaleLayer: x + 0.17/0.1/0.2 * branch.",
}


def application_names():
    return sorted(n for n in dir(keras.applications) if n[0].isupper())


def application_size(name):
    return _MIN_SIZE.get(name, 32)


def _application(name):
    size = application_size(name)

    def build():
        keras.utils.set_random_seed(0)
        return getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=CLASSES)

    note = _APP_NOTES.get(name, "")
    if name.startswith("ConvNeXt") and not note:
        note = _APP_NOTES["ConvNeXtTiny"]
    if _PIXEL_INPUT.match(name):
        note = (note + " " if note else "") + "In-graph preprocessing: fed pixels in [0, 255]."
    return ZooModel(
        name=name, build=build, batch=pixel_batch if _PIXEL_INPUT.match(name) else normal_batch,
        labels=class_labels, loss=SPARSE_CE, expect=None, slow=name not in _FAST_APPS,
        family="applications", note=note)


APPLICATIONS = [_application(n) for n in application_names()]


# ---------------------------------------------------------------------------------------
# keras-hub backbones, small, random weights, stock initializers

_TEXT = dict(vocabulary_size=VOCAB, num_layers=2, hidden_dim=DIM, intermediate_dim=2 * DIM)
_HUB_ARGS = {
    "GPT2Backbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "BertBackbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "RobertaBackbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "XLMRobertaBackbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "DistilBertBackbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "AlbertBackbone": dict(_TEXT, num_heads=HEADS, embedding_dim=32, max_sequence_length=32),
    "ElectraBackbone": dict(vocab_size=VOCAB, num_layers=2, hidden_dim=DIM,
                            intermediate_dim=2 * DIM, num_heads=HEADS, embedding_dim=DIM,
                            max_sequence_length=32),
    "DebertaV3Backbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32, bucket_size=8),
    "OPTBackbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "GPTNeoXBackbone": dict(_TEXT, num_heads=HEADS, max_sequence_length=32),
    "BloomBackbone": dict(_TEXT, num_heads=HEADS),
    "FalconBackbone": dict(_TEXT, num_attention_heads=HEADS),
    "LlamaBackbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=2),
    "Llama3Backbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=2),
    "MistralBackbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=2,
                            sliding_window=SEQ_LEN),
    "QwenBackbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=2),
    "Qwen3Backbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=2, head_dim=16),
    "Phi3Backbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=2),
    "GemmaBackbone": dict(_TEXT, num_query_heads=HEADS, num_key_value_heads=1, head_dim=16),
    "Gemma3Backbone": dict(_TEXT, image_size=None, num_query_heads=HEADS,
                           num_key_value_heads=1, head_dim=16),
    "ViTBackbone": dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=HEADS,
                        hidden_dim=DIM, mlp_dim=2 * DIM),
    "DeiTBackbone": dict(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=HEADS,
                         hidden_dim=DIM, intermediate_dim=2 * DIM),
    "DINOV2Backbone": dict(patch_size=8, num_layers=2, hidden_dim=DIM, num_heads=HEADS,
                           intermediate_dim=2 * DIM, image_shape=(32, 32, 3),
                           position_embedding_shape=(32, 32, 3)),
}
# Measured: 1.6-2.4 s to build and diagnose for all others.
_SLOW_HUB = {"DeiTBackbone"}  # 3.9 s
_HUB_NOTES = {
    "BertBackbone": "Dict output {pooled_output, sequence_output}; labels keyed the same.",
    "AlbertBackbone": "Dict output {pooled_output, sequence_output}; labels keyed the same.",
    "ElectraBackbone": "Dict output {pooled_output, sequence_output}; labels keyed the same.",
    "DINOV2Backbone": "LayerScale, initialized at 1.0 (stock layer_scale_init_value).",
}


def _hub(name):
    args = _HUB_ARGS[name]
    vision = "image_shape" in args

    def build():
        import keras_hub

        keras.utils.set_random_seed(0)
        return getattr(keras_hub.models, name)(**args)

    return ZooModel(
        name=name, build=build, batch=hub_batch,
        labels=image_targets if vision else sequence_targets, loss=MSE, expect=None,
        slow=name in _SLOW_HUB, family="keras_hub", note=_HUB_NOTES.get(name, ""))


HUB = [_hub(n) for n in _HUB_ARGS]


# ---------------------------------------------------------------------------------------
# Known failures (and healthy controls built the same way)

def dense_stack(init, activation="relu", depth=30, width=256, inputs=256, bias=None, name="mlp"):
    layers = [keras.Input((inputs,))] + [
        L.Dense(width, activation=activation, kernel_initializer=init,
                bias_initializer=bias or "zeros", name=f"dense_{i}") for i in range(depth)]
    return keras.Sequential(layers, name=name)


def residual_mlp(blocks=30, width=128, init="he_normal", name="residual_mlp"):
    """`blocks` of x + Dense(ReLU(Dense(x))), no normalization; Add([skip, branch])."""
    x = inputs = keras.Input((width,))
    for i in range(blocks):
        h = L.Dense(width, activation="relu", kernel_initializer=init, name=f"b{i}_dense1")(x)
        h = L.Dense(width, kernel_initializer=init, name=f"b{i}_dense2")(h)
        x = L.Add(name=f"b{i}_add")([x, h])
    return keras.Model(inputs, x, name=name)


def residual_cnn(blocks=30, channels=16, size=16, init="he_normal", name="residual_cnn"):
    """A stem and `blocks` of x + Conv(ReLU(Conv(x))), no normalization; Add([skip, branch])."""
    inputs = keras.Input((size, size, 3))
    x = L.Conv2D(channels, 3, padding="same", kernel_initializer=init, name="stem")(inputs)
    for i in range(blocks):
        h = L.Conv2D(channels, 3, padding="same", activation="relu", kernel_initializer=init,
                     name=f"b{i}_conv1")(x)
        h = L.Conv2D(channels, 3, padding="same", kernel_initializer=init, name=f"b{i}_conv2")(h)
        x = L.Add(name=f"b{i}_add")([x, h])
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(CLASSES, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, x, name=name)


def transformer_block(x, dim=DIM, heads=HEADS, ff_dim=2 * DIM, init="glorot_uniform",
                      name="block", attention_dropout=0.0):
    """A pre-LN transformer block (GPT-2 style): x + MHA(LN(x)), then x + FFN(LN(x)).

    The residual adds are `keras.layers.Add()([skip, branch])`. `init` goes to every
    kernel (attention projections and both FFN layers).

    Keras 3.15's MultiHeadAttention with dropout 0 computes attention with the fused
    `ops.dot_product_attention` and never calls its `_softmax` sublayer; with
    `attention_dropout > 0` it takes the explicit path through `_softmax`.
    """
    h = L.LayerNormalization(name=f"{name}_ln1")(x)
    h = L.MultiHeadAttention(heads, dim // heads, dropout=attention_dropout,
                             kernel_initializer=init, name=f"{name}_mha")(h, h)
    x = L.Add(name=f"{name}_add1")([x, h])
    h = L.LayerNormalization(name=f"{name}_ln2")(x)
    h = L.Dense(ff_dim, activation="gelu", kernel_initializer=init, name=f"{name}_ff1")(h)
    h = L.Dense(dim, kernel_initializer=init, name=f"{name}_ff2")(h)
    return L.Add(name=f"{name}_add2")([x, h])


def small_transformer(blocks=4, init="glorot_uniform", seq=SEQ_LEN, dim=DIM, heads=HEADS,
                      name="transformer", attention_dropout=0.0):
    """Input (seq, dim) features -> Dense embedding -> `blocks` pre-LN blocks -> final LN."""
    inputs = keras.Input((seq, dim))
    x = L.Dense(dim, kernel_initializer=init, name="embed")(inputs)
    for i in range(blocks):
        x = transformer_block(x, dim, heads, 2 * dim, init, name=f"block{i}",
                              attention_dropout=attention_dropout)
    x = L.LayerNormalization(name="final_ln")(x)
    return keras.Model(inputs, x, name=name)


def attention_stack(depth=16, seq=SEQ_LEN, dim=DIM, heads=HEADS, name="attention_stack",
                    attention_dropout=0.0):
    """`depth` MultiHeadAttention layers in sequence: no skips, no FFN, no normalization."""
    x = inputs = keras.Input((seq, dim))
    for i in range(depth):
        x = L.MultiHeadAttention(heads, dim // heads, dropout=attention_dropout,
                                 name=f"mha_{i}")(x, x)
    return keras.Model(inputs, x, name=name)


def scale_query_key(model, factor):
    """Multiplies every MultiHeadAttention's query and key kernels by `factor` in place:
    the attention logits grow by factor**2."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, L.MultiHeadAttention):
            for dense in (layer.query_dense, layer.key_dense):
                dense.kernel.assign(dense.kernel * factor)
    return model


def _seeded(fn, *args, **kwargs):
    def build():
        keras.utils.set_random_seed(0)
        return fn(*args, **kwargs)
    return build


def _entropy_collapsed():
    keras.utils.set_random_seed(0)
    return scale_query_key(small_transformer(4, name="qk_scaled_transformer"), 20.0)


_N = keras.initializers.RandomNormal
FAILURES = [
    ZooModel("glorot_relu_mlp",
             _seeded(dense_stack, "glorot_uniform", depth=50, name="glorot_relu_mlp"),
             normal_batch, mlp_targets, MSE, expect="vanishing",
             note="50 Dense(256) glorot_uniform ReLU: RMS ratio about 5e-3 by layer 15 and "
                  "1e-8 by layer 50, an error (at depth 30, 2e-5, it trains slower: a "
                  "warning; docs/severity_calibration.md)."),
    ZooModel("small_normal_relu_mlp",
             _seeded(dense_stack, _N(stddev=0.01, seed=0), name="small_normal_relu_mlp"),
             normal_batch, mlp_targets, MSE, expect="vanishing",
             note="30 Dense(256) N(0, 0.01) ReLU: gain 0.11 per layer."),
    ZooModel("unit_normal_relu_mlp",
             _seeded(dense_stack, _N(stddev=1.0, seed=0), depth=12, name="unit_normal_relu_mlp"),
             normal_batch, mlp_targets, MSE, expect="exploding",
             note="12 Dense(256) N(0, 1) ReLU: gain about sqrt(256/2) = 11 per layer, finite."),
    ZooModel("overflow_relu_mlp",
             _seeded(dense_stack, _N(stddev=1.0, seed=0), depth=40, width=512, inputs=512,
                     name="overflow_relu_mlp"),
             normal_batch, mlp_targets, MSE, expect="nonfinite", slow=True,
             note="40 Dense(512) N(0, 1) ReLU: gain 16 per layer, RMS 3e36 at layer 30 and inf "
                  "(float32 overflow) by 33; an exploding finding comes first in depth."),
    ZooModel("saturated_tanh_mlp",
             _seeded(dense_stack, _N(stddev=1.0, seed=0), "tanh", depth=10,
                     name="saturated_tanh_mlp"),
             normal_batch, mlp_targets, MSE, expect="saturated",
             note="10 Dense(256) N(0, 1) tanh: pre-activations of std ~16."),
    ZooModel("dead_relu_mlp",
             _seeded(dense_stack, "he_normal", depth=10,
                     bias=keras.initializers.Constant(-3.0), name="dead_relu_mlp"),
             normal_batch, mlp_targets, MSE, expect="dead",
             note="10 Dense(256) He ReLU with bias -3: most units never fire."),
    ZooModel("residual_mlp_no_norm", _seeded(residual_mlp), normal_batch, mlp_targets, MSE,
             expect="exploding",
             note="30 blocks He Dense-ReLU-Dense added to the skip: RMS 1 -> ~2e7."),
    ZooModel("residual_cnn_no_norm", _seeded(residual_cnn), normal_batch, class_labels,
             keras.losses.SparseCategoricalCrossentropy(from_logits=True), expect="exploding",
             note="16x16x16, 30 blocks He Conv-ReLU-Conv added to the skip; logits head."),
    ZooModel("unit_normal_transformer",
             _seeded(small_transformer, 4, _N(stddev=1.0, seed=0), dim=128,
                     name="unit_normal_transformer"),
             normal_batch, sequence_targets, MSE, expect="entropy_collapse",
             note="4 pre-LN blocks of width 128, every kernel N(0, 1): one Dense has gain "
                  "sqrt(128) = 11, an attention branch ~128 (value x output projection), "
                  "a warning; the attention logits grow 128-fold and its softmax collapses "
                  "onto one key, the error."),
    ZooModel("attention_stack", _seeded(attention_stack, 12), normal_batch, sequence_targets,
             MSE, expect="rank_collapse",
             note="12 MHA layers (stock Glorot), no skips/FFN: the tokens' spread around their "
                  "mean falls 0.65, 0.026, 1e-6 over the first three (Dong et al. 2021)."),
    ZooModel("qk_scaled_transformer", _entropy_collapsed, normal_batch, sequence_targets, MSE,
             expect="entropy_collapse",
             note="4 stock pre-LN blocks, query and key kernels x20 after building: "
                  "logits x400, attention one-hot (Zhai et al. 2023)."),
    # Healthy controls, built like the failures above.
    ZooModel("he_relu_mlp", _seeded(dense_stack, "he_normal", name="he_relu_mlp"),
             normal_batch, mlp_targets, MSE, expect=None,
             note="Control: 30 Dense(256) He ReLU."),
    ZooModel("stock_transformer", _seeded(small_transformer, 4), normal_batch,
             sequence_targets, MSE, expect=None,
             note="Control: 4 pre-LN blocks, stock Glorot kernels."),
]

ZOO = APPLICATIONS + HUB + FAILURES
_BY_NAME = {m.name: m for m in ZOO}
assert len(_BY_NAME) == len(ZOO), "zoo names must be unique"


def by_name(name):
    return _BY_NAME[name]


def members(quick=False, only=None, family=None):
    """The zoo, without `slow` members if `quick`, names matching regex `only` (search)."""
    pattern = re.compile(only) if only else None
    return [m for m in ZOO
            if not (quick and m.slow)
            and (pattern is None or pattern.search(m.name))
            and (family is None or m.family == family)]


def smoke(member, seed=0):
    """Builds `member`, runs it on its batch (training=False) and checks its labels match.

    Returns (model, build seconds, forward seconds, output shapes).
    """
    start = time.perf_counter()
    model = member.build()
    built = time.perf_counter() - start
    x = member.batch(model, seed)
    start = time.perf_counter()
    y_pred = model(x, training=False)
    forward = time.perf_counter() - start
    shapes = keras.tree.map_structure(lambda t: tuple(t.shape), y_pred)
    if member.labels is not None:
        y = member.labels(model, seed)
        if member.loss == SPARSE_CE or isinstance(member.loss,
                                                  keras.losses.SparseCategoricalCrossentropy):
            assert y.shape == (shapes[0],), (member.name, y.shape, shapes)
        else:
            got = keras.tree.map_structure(lambda a: tuple(a.shape), y)
            assert got == shapes, (member.name, got, shapes)
    return model, built, forward, shapes
