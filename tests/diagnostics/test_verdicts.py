"""The verdicts on measured scales: backward signal, references, severity, collapses, zero
starts."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from nets import batch, mlp

import keras_initkit
from keras_initkit import activations
from keras_initkit.diagnostics import ADAM_STEP, Thresholds, cached_probe, stats
from keras_initkit.diagnostics.findings import find

L = keras.layers


def test_backward_signal_is_the_rms_of_the_loss_gradient_of_each_output():
    keras.utils.set_random_seed(0)
    model = mlp("kit_he", depth=4, width=16, inputs=8)
    model.compile("sgd", "mse")
    x, y = batch(32, 8), batch(32, 16, seed=1)
    rows = cached_probe(model, "mse")(x, y).activations
    with tf.GradientTape(persistent=True) as tape:
        outputs, h = [], tf.constant(x)
        tape.watch(h)
        for layer in model.layers:
            h = layer(h, training=True)
            outputs.append(h)
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, h))
    for row, out in zip(rows, outputs):
        g = tape.gradient(loss, out).numpy()
        assert row.stats["grad_rms"] == pytest.approx(np.sqrt(np.mean(g ** 2)), rel=1e-5)
        assert row.stats["token_cosine"] == row.stats["attention_entropy"] == -1


def test_token_cosine_and_attention_entropy_against_direct_computation():
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((3, 5, 7)).astype("float32")
    unit = tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)
    pairs = [unit[b, i] @ unit[b, j] for b in range(3) for i in range(5) for j in range(5)
             if i != j]
    got = keras.ops.convert_to_numpy(stats.token_cosine(tokens[None]))
    assert got[0] == pytest.approx(np.mean(pairs), abs=1e-6)
    same = np.repeat(tokens[:, :1], 5, axis=1)
    assert keras.ops.convert_to_numpy(stats.token_cosine(same[None]))[0] == pytest.approx(1, 1e-6)
    # Uniform over 6 keys; one-hot (a collapse past float32's range: 0 of log 6); causal
    # (query i sees i + 1 keys uniformly; the first, with one key, counts with log 6).
    uniform = np.full((1, 2, 4, 6), 1 / 6, "float32")
    onehot = np.eye(6, dtype="float32")[None, None, :4]
    causal = np.tril(np.ones((6, 6), "float32"))
    causal = (causal / causal.sum(-1, keepdims=True))[None, None]
    seen = np.log(np.arange(1, 7))
    for probs, entropy, maximum in ((uniform, np.log(6), np.log(6)), (onehot, 0, np.log(6)),
                                    (causal, np.mean(seen),
                                     np.mean(np.r_[np.log(6), seen[1:]]))):
        h, m = (keras.ops.convert_to_numpy(v)[0] for v in stats.attention_entropy(probs[None]))
        assert h == pytest.approx(entropy, abs=1e-5) and m == pytest.approx(maximum, abs=1e-5)


class RootMeanSquareNorm(L.Layer):  # a user's RMSNorm: recognised by what it does
    def call(self, x):
        return x / keras.ops.sqrt(keras.ops.mean(x * x, axis=-1, keepdims=True) + 1e-6)


class DoublingNorm(L.Layer):  # "Norm" in its name, but not scale-invariant
    def call(self, x):
        return 2 * x


class Amplify(L.Layer):  # the same as RootMeanSquareNorm, under a name that says nothing
    def call(self, x):
        return x / keras.ops.sqrt(keras.ops.mean(x * x, axis=-1, keepdims=True) + 1e-6)


def test_normalization_is_recognised_by_what_it_does():
    for layer, expected in ((RootMeanSquareNorm(), True), (DoublingNorm(), False),
                            (L.LayerNormalization(), True), (L.RMSNormalization(), True),
                            (L.Normalization(mean=0.0, variance=1.0), False), (L.Dense(4), False)):
        assert activations.is_normalization(layer, (None, 8)) is expected, layer


@pytest.mark.parametrize("norm", [RootMeanSquareNorm, Amplify])
def test_a_normalization_after_a_small_embedding_gets_no_layer_gain_finding(norm):
    # Llama's case: the embedding starts at N(0, 0.01), its RMS normalization multiplies by
    # 100 on purpose. The same layer unrecognised (no "norm" in its name) is flagged.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16,)), L.Dense(32, kernel_initializer=keras.initializers.RandomNormal(
            stddev=0.01 / 4), name="small"), norm(name="rescale"),
        L.Dense(32, activation="relu", kernel_initializer="kit_he", name="after")])
    found = keras_initkit.diagnose(model, batch(64, 16)).findings
    flagged = [f for f in found if f.kind == "exploding" and f.path.endswith("rescale")]
    assert bool(flagged) == (norm is Amplify), found


def residual_mlp(blocks, normalized):
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((64,))
    for i in range(blocks):
        h = L.LayerNormalization(name=f"ln{i}")(x) if normalized else x
        h = L.Dense(64, activation="relu", kernel_initializer="he_normal")(h)
        h = L.Dense(64, kernel_initializer="he_normal", name=f"out{i}")(h)
        x = L.Add(name=f"add{i}")([x, h])
    return keras.Model(inputs, L.Dense(10, name="head")(x))


def test_a_residual_stream_that_grows_block_over_block_is_an_exploding_error():
    report = keras_initkit.diagnose(residual_mlp(30, normalized=False), batch(64, 64))
    forward = next(f for f in report.findings if (f.kind, f.signal) == ("exploding",
                                                                          "activation"))
    assert forward.severity == "error" and not report.healthy
    assert "SkipInit" in forward.message and "Fixup" in forward.message
    assert "kit_he instead of unit variance" not in " ".join(f.message for f in report.findings)
    # The same blocks read through LayerNormalization (pre-LN): the stream grows additively,
    # and every block sees it normalized.
    healthy = keras_initkit.diagnose(residual_mlp(30, normalized=True), batch(64, 64))
    assert healthy.healthy and not any(f.kind in ("exploding", "vanishing")
                                       for f in healthy.findings), healthy.findings


def test_a_zero_classifier_is_judged_after_one_adam_step_and_left_untouched():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,))] + [
        L.Dense(64, activation="relu", kernel_initializer="kit_he") for _ in range(6)] + [
        L.Dense(10, kernel_initializer="zeros", name="classifier")])
    before = [w.copy() for w in model.get_weights()]
    x = batch(64, 32)
    raw = cached_probe(model)(x)
    # Judged as it stands, everything behind the zero classifier has no backward signal.
    assert any(f.kind == "vanishing" and f.signal == "gradient"
               for f in find(raw, Thresholds()))
    report = keras_initkit.diagnose(model, x)
    assert report.healthy and not report.findings, report.findings
    assert "classifier/kernel" in report.note and f"{ADAM_STEP:g}" in report.note
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert report.layers[-2]["grad_rms"] > 0  # the stepped model's signal reaches back


def pre_ln_transformer(blocks=2):
    tokens = keras.Input((16, 32))
    h = tokens
    for i in range(blocks):
        n = L.LayerNormalization()(h)
        h = L.Add()([h, L.MultiHeadAttention(2, 16, name=f"attention{i}")(n, n)])
        n = L.LayerNormalization()(h)
        h = L.Add()([h, L.Dense(32)(L.Dense(64, activation="gelu")(n))])
    return keras.Model(tokens, L.Dense(10, name="head")(L.LayerNormalization()(h)))


def test_kernels_dead_at_zero_are_an_error_and_a_zero_start_on_purpose_is_not():
    keras.utils.set_random_seed(0)
    model, x = pre_ln_transformer(), batch(8 * 16, 32).reshape(8, 16, 32)
    assert keras_initkit.diagnose(model, x).healthy
    for variable in model.trainable_variables:  # every kernel and the head at zero
        if len(variable.shape) >= 2:
            variable.assign(np.zeros(variable.shape, "float32"))
    report = keras_initkit.diagnose(model, x)
    dead = [f for f in report.findings if (f.kind, f.signal) == ("dead", "weight")]
    assert len(dead) == 1 and dead[0].severity == "error" and not report.healthy
    assert dead[0].path == "attention0/query" and "11 more kernels" in dead[0].message
    # Fixup's start: each branch's last kernel at zero, the rest random; no dead kernel.
    keras.utils.set_random_seed(0)
    model = pre_ln_transformer()
    keras_initkit.reinitialize(model, "fixup", seed=0)
    assert not any(f.signal == "weight" for f in keras_initkit.diagnose(model, x).findings)


def test_the_error_band_lies_beyond_the_warning_band():
    with pytest.raises(ValueError, match="vanishing_error_ratio.*vanishing_ratio"):
        Thresholds(vanishing_error_ratio=0.1)
    with pytest.raises(ValueError, match="dead_error_fraction"):
        Thresholds(dead_error_fraction=0.3)
    with pytest.raises(ValueError, match="entropy_collapse_ratio"):
        Thresholds(entropy_collapse_ratio=1.5)


def test_severity_decides_health_and_the_table_marks_warnings():
    glorot = keras_initkit.diagnose(mlp("kit_glorot_normal", depth=20), batch())
    assert glorot.findings and {f.severity for f in glorot.findings} == {"warning"}
    assert glorot.healthy and "warning(s)" in glorot.table() and "vanishing?" in glorot.table()
    assert glorot.to_dict()["findings"][0]["severity"] == "warning"
