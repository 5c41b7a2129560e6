"""Whole-model recipes: the roles found in the traced graph, each recipe's rule, the audit."""
import math
import warnings

import keras
import keras_hub
import numpy as np
import pytest

import keras_initkit
from keras_initkit.model_init.recipes import TRUNC
from keras_initkit.model_init.residual import structure_of

L = keras.layers


def near(values, std, sigmas=6.0):
    """The RMS of n draws of std `std` is within `sigmas` standard errors, std / sqrt(2 n)."""
    values = np.asarray(values, dtype=np.float64)
    rms = math.sqrt(np.mean(values**2))
    return abs(rms - std) <= sigmas * std / math.sqrt(2 * values.size)


def residual_mlp(blocks=30, width=64, bn=False):
    x = keras.Input((16,))
    h = L.Dense(width, activation="relu", name="stem")(x)
    for i in range(blocks):
        b = L.Dense(width, activation="relu", name=f"in_{i}")(h)
        b = L.Dense(width, name=f"out_{i}")(b)
        if bn:
            b = L.BatchNormalization(name=f"bn_{i}")(b)
        h = L.Add(name=f"add_{i}")([h, b])
    return keras.Model(x, L.Dense(10, activation="softmax", name="head")(h))


def gpt2(layers=4, hidden=128):
    return keras_hub.models.GPT2Backbone(vocabulary_size=1000, num_layers=layers, num_heads=4,
                                         hidden_dim=hidden, intermediate_dim=4 * hidden,
                                         max_sequence_length=64)


def weight(model, path):
    return next(v for v in model.weights if v.path == path).numpy()


def test_roles_of_a_functional_residual_net_and_a_projection_shortcut():
    roles = structure_of(residual_mlp(blocks=2)).roles()
    assert roles["in_0/kernel"] == roles["in_1/kernel"] == "residual_inner"
    assert roles["out_0/kernel"] == roles["out_1/kernel"] == "residual_out"
    assert roles["stem/kernel"] == "kernel" and roles["head/kernel"] == "readout"
    assert roles["out_0/bias"] == "bias"

    image = keras.Input((8, 8, 4))
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(image)
    a = L.Conv2D(8, 3, padding="same", name="b")(a)
    a = L.BatchNormalization(name="bn")(a)
    skip = L.Conv2D(8, 1, name="projection")(image)
    model = keras.Model(image, L.Add()([skip, a]))
    structure = structure_of(model)
    (branch,) = structure.branches
    assert branch.output == ("b/kernel",) and branch.inner == ("a/kernel",)
    assert branch.shortcut == ("projection/kernel",) and branch.norms == ("bn/gamma",)
    assert structure.role("bn/moving_variance") == "norm_statistic"


def test_keras_hub_blocks_are_found_inside_their_call():
    model = keras_hub.models.LlamaBackbone(vocabulary_size=100, num_layers=3, num_query_heads=4,
                                           num_key_value_heads=2, hidden_dim=32,
                                           intermediate_dim=64)
    structure = structure_of(model)
    assert len(structure.branches) == 6 and len(structure.attention) == 3
    outputs = sorted(p for b in structure.branches for p in b.output)
    assert outputs == sorted([f"transformer_layer_{i}/self_attention/attention_output/kernel"
                              for i in range(3)] +
                             [f"transformer_layer_{i}/feedforward_output_dense/kernel"
                              for i in range(3)])
    first = structure.attention[0]
    assert sorted(first.query_key) == ["transformer_layer_0/self_attention/key/kernel",
                                       "transformer_layer_0/self_attention/query/kernel"]
    assert first.value == ("transformer_layer_0/self_attention/value/kernel",)
    # keras-hub's RMS normalization is recognised by what it does, not by its class; the
    # final one too, called on a (batch, sequence, width) input of unknown length.
    assert structure.role("transformer_layer_0/self_attention_layernorm/scale") == "norm_scale"
    assert structure.role("sequence_output_layernorm/scale") == "norm_scale"


def test_a_sequential_model_is_read_from_its_inputs():
    # Keras 3 gives a Sequential model built from keras.Input `inputs` but no `input`.
    model = keras.Sequential([keras.Input((16,)), L.Dense(32, activation="relu"), L.Dense(10)])
    structure = structure_of(model)
    assert structure.readout == (model.layers[-1].kernel.path,)
    assert structure.role(model.layers[0].kernel.path) == "kernel"


def test_a_grouped_convolution_is_a_kernel_of_its_branch():
    # ConvNeXt's depthwise convolution: on TensorFlow, Keras calls a compiled function for it.
    image = keras.Input((8, 8, 16))
    h = L.Conv2D(16, 3, padding="same", groups=16, name="depthwise")(image)
    h = L.Conv2D(32, 1, activation="relu", name="expand")(h)
    model = keras.Model(image, L.Add()([image, L.Conv2D(16, 1, name="project")(h)]))
    (branch,) = structure_of(model).branches
    assert branch.inner == ("depthwise/kernel", "expand/kernel")
    assert branch.output == ("project/kernel",)


def test_a_recipe_warns_on_a_model_without_what_it_is_for():
    plain = keras.Sequential([keras.Input((16,)), L.Dense(32, activation="relu"), L.Dense(10)])
    with pytest.warns(UserWarning, match="recipe='fixup' is for residual networks.*no residual"):
        keras_initkit.reinitialize(plain, "fixup", seed=0)
    with pytest.warns(UserWarning, match="recipe='gpt2' is for transformers.*no attention"):
        keras_initkit.reinitialize(residual_mlp(blocks=1), "gpt2", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_initkit.reinitialize(residual_mlp(blocks=1), "fixup", seed=0)
        keras_initkit.reinitialize(gpt2(layers=1, hidden=32), "gpt2", seed=0)


def test_a_kernel_named_like_a_position_embedding_stays_a_kernel():
    x = keras.Input((16,))
    h = L.Dense(32, activation="relu", name="position_encoder")(x)
    b = L.Dense(32, name="block")(L.Dense(32, activation="relu", name="inner")(h))
    model = keras.Model(x, L.Dense(10, name="head")(L.Add()([h, b])))
    assert structure_of(model).role("position_encoder/kernel") == "kernel"


def test_gpt2_scales_exactly_the_residual_projections():
    model = gpt2()
    rows = keras_initkit.reinitialize(model, "gpt2", seed=0)
    out = {r["layer"] + "/" + r["weight"] for r in rows if r["role"] == "residual_out"}
    assert out == {f"transformer_layer_{i}/{name}/kernel" for i in range(4)
                   for name in ("self_attention/attention_output", "feedforward_output_dense")}
    for row in rows:
        value = weight(model, row["layer"] + "/" + row["weight"])
        if row["role"] == "residual_out":
            assert near(value, 0.02 / math.sqrt(2 * 4)), row
        elif row["role"] in ("residual_inner", "embedding", "position_embedding"):
            assert near(value, 0.02), row
            assert np.abs(value).max() > 2.5 * 0.02  # untruncated: the tails are there
        elif row["role"] in ("bias", "norm_shift"):
            assert not value.any()
        elif row["role"] == "norm_scale":
            assert (value == 1).all()
    assert keras_initkit.audit(model, "gpt2").differing == []


def test_audit_of_stock_keras_hub_gpt2_lists_what_it_draws_otherwise():
    audit = keras_initkit.audit(gpt2(), "gpt2")
    projections = [f"transformer_layer_{i}/{name}/kernel" for i in range(4)
                   for name in ("self_attention/attention_output", "feedforward_output_dense")]
    # keras-hub draws every kernel at 0.02 with no 1/sqrt(2 n_layer) for the projections, and
    # its token embedding at 0.01, where GPT-2's code and nanoGPT draw it at 0.02.
    assert sorted(audit.differing) == sorted(projections + ["token_embedding/embeddings"])
    row = next(r for r in audit if r["weight"] == projections[0])
    assert row["expected_std"] == pytest.approx(0.02 / math.sqrt(8))
    assert row["measured_std"] == pytest.approx(0.02, rel=0.05)


def test_recipes_are_deterministic_under_seed():
    model = gpt2(layers=2, hidden=32)
    for recipe in keras_initkit.model_init.RECIPES:
        keras_initkit.reinitialize(model, recipe, seed=3)
        first = [v.numpy().copy() for v in model.weights]
        keras_initkit.reinitialize(model, recipe, seed=3)
        assert all(np.array_equal(a, v.numpy()) for a, v in zip(first, model.weights)), recipe
        keras_initkit.reinitialize(model, recipe, seed=4)
        assert not all(np.array_equal(a, v.numpy()) for a, v in zip(first, model.weights))


def test_bert_vit_t_fixup_and_deepnorm_rules():
    bert = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2, num_heads=4,
                                         hidden_dim=128, intermediate_dim=512,
                                         max_sequence_length=64)
    keras_initkit.reinitialize(bert, "bert", seed=0)
    query = weight(bert, "transformer_layer_0/self_attention_layer/query/kernel")
    assert near(query, 0.02 * TRUNC) and np.abs(query).max() <= 0.04 * (1 + 1e-6)

    vit = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                       num_heads=2, hidden_dim=64, mlp_dim=128)
    rows = {r["layer"] + "/" + r["weight"]: r for r in keras_initkit.reinitialize(
        vit, "vit", seed=0)}
    (patches,) = [p for p, r in rows.items() if r["scheme"] == "lecun_normal"]
    assert patches == "vit_patching_and_embedding/patch_embedding/kernel"
    value = weight(vit, patches)
    assert near(value, math.sqrt(1 / np.prod(value.shape[:-1])))
    token = weight(vit, "vit_patching_and_embedding/class_token")
    assert 0 < np.abs(token).max() < 1e-5
    assert near(weight(vit, "vit_patching_and_embedding/position_embedding/embeddings"), 0.02)

    model, n = gpt2(layers=4), 4
    for recipe, factor in (("deepnorm", (8 * n) ** -0.25), ("t_fixup", 0.67 * n**-0.25)):
        keras_initkit.reinitialize(model, recipe, seed=1)
        for name, scaled in (("self_attention/value", True), ("self_attention/query", False),
                             ("feedforward_intermediate_dense", True)):
            value = weight(model, f"transformer_layer_1/{name}/kernel")
            fan_in, fan_out = value.shape[0], int(np.prod(value.shape[1:]))
            glorot = math.sqrt(2 / (fan_in + fan_out))
            assert near(value, glorot * (factor if scaled else 1.0)), (recipe, name)
    token = weight(model, "token_embedding/embeddings")
    assert near(token, 128**-0.5 * (9 * n) ** -0.25)  # t_fixup's embeddings, the last drawn


@pytest.mark.parametrize("recipe", ["fixup", "skipinit"])
def test_fixup_and_skipinit_make_an_exploding_residual_net_healthy(recipe):
    model = residual_mlp()
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    keras_initkit.reinitialize(model, "kit_he", seed=0)
    assert not keras_initkit.diagnose(model, x).healthy  # He alone: the stream explodes
    keras_initkit.reinitialize(model, recipe, seed=0)
    assert keras_initkit.diagnose(model, x).healthy
    adds = [layer for layer in model.layers if isinstance(layer, L.Add)]
    blocks = keras.Model(model.input, [[a.input[0], a.output] for a in adds])
    for stream, out in blocks(x):  # each block returns its input
        np.testing.assert_array_equal(np.asarray(stream), np.asarray(out))
    if recipe == "fixup":
        m = 2  # Dense-ReLU-Dense: the inner kernel scaled by L^(-1/(2m-2)) on He
        assert near(weight(model, "in_3/kernel"), math.sqrt(2 / 64) * 30 ** (-1 / (2 * m - 2)))
        assert not weight(model, "head/kernel").any()


def test_skipinit_zeroes_the_last_normalization_gain_where_a_branch_has_one():
    model = residual_mlp(blocks=2, bn=True)
    keras_initkit.reinitialize(model, "skipinit", seed=0)
    assert not weight(model, "bn_1/gamma").any()
    assert weight(model, "out_1/kernel").any()


def test_bad_recipe_arguments_are_named():
    model = residual_mlp(blocks=1)
    with pytest.raises(ValueError, match="recipe.*gpt2.*received recipe='gpt3'"):
        keras_initkit.audit(model, "gpt3")
    with pytest.raises(ValueError, match="Unknown initializer 'GPT-2'.*Did you mean 'gpt2'"):
        keras_initkit.reinitialize(model, "GPT-2")
    keras_initkit.reinitialize(model, "fixup", seed=np.int64(3))  # NumPy's integers are seeds
    with pytest.raises(ValueError, match="layers.*biases"):
        keras_initkit.reinitialize(model, "fixup", layers=["in_0"])
    with pytest.raises(ValueError, match="sigmas"):
        keras_initkit.audit(model, "fixup", sigmas=0)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(4)

        def call(self, x):
            return x + self.dense(x)

    sub = Sub()
    sub(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="x="):
        keras_initkit.reinitialize(sub, "skipinit")
    rows = keras_initkit.reinitialize(sub, "skipinit", x=np.zeros((1, 4), "float32"))
    assert [r["role"] for r in rows if r["weight"] == "kernel"] == ["residual_out"]
    assert not sub.dense.kernel.numpy().any()


def test_vit_and_bert_draws_follow_their_reference_truncations():
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    n = 200_000
    generator = torch.Generator().manual_seed(0)
    timm = torch.nn.init.trunc_normal_(torch.empty(n), std=0.02, generator=generator).numpy()
    assert near(timm, 0.02)  # timm's bounds are +-2 absolute: 100 std, no truncation at all
    bert = tf.keras.initializers.TruncatedNormal(stddev=0.02, seed=0)((n,)).numpy()
    assert near(bert, 0.02 * TRUNC) and np.abs(bert).max() <= 0.04
    model = gpt2(layers=1, hidden=256)
    for recipe, reference in (("vit", timm), ("bert", bert)):
        keras_initkit.reinitialize(model, recipe, seed=0)
        ours = weight(model, "transformer_layer_0/feedforward_intermediate_dense/kernel")
        assert near(ours, float(np.sqrt(np.mean(reference**2)))), recipe
        assert (np.abs(ours).max() > 0.04) == (recipe == "vit")  # only BERT cuts at 2 std
