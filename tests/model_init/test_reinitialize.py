"""reinitialize(): the scheme follows the activation, fans follow the layer type, nothing else
moves."""
import math

import keras
import numpy as np
import pytest

import keras_initkit
from keras_initkit._compat import flat_layers, own_variables
from keras_initkit.diagnostics.probe import layer_path

L = keras.layers


def rows_by(report, layer_suffix, weight="kernel"):
    return next(r for r in report if r["layer"].endswith(layer_suffix) and r["weight"] == weight)


def std_tolerance(n, sigma):
    # The sample std of n draws has a standard error of about sigma / sqrt(2 n); allow 5 of them.
    return 5 * sigma / np.sqrt(2 * n)


def test_the_scheme_follows_each_layers_activation():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((256,))
    x = L.Dense(512, activation="relu", name="relu_dense")(inputs)
    x = L.Dense(512, name="bn_then_relu")(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Dense(512, activation="selu", name="selu_dense")(x)
    x = L.Dense(512, activation="tanh", name="tanh_dense")(x)
    x = L.Dense(512, name="leaky")(x)
    x = L.LeakyReLU(negative_slope=0.2)(x)
    x = L.Dense(512, activation="gelu", name="gelu_dense")(x)
    outputs = L.Dense(10, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    report = keras_initkit.reinitialize(model, seed=1)
    expected = {  # layer -> (variance, scheme word)
        "relu_dense": (2 / 256, "he"), "bn_then_relu": (2 / 512, "he"),
        "selu_dense": (1 / 512, "lecun"), "tanh_dense": ((5 / 3) ** 2 * 2 / 1024, "glorot"),
        "leaky": (2 / (1.04 * 512), "slope 0.2"),
        "gelu_dense": (keras_initkit.fans.unit_moment_gain("gelu") ** 2 / 512, "gelu"),
        "head": (2 / 522, "glorot"),
    }
    for name, (variance, word) in expected.items():
        kernel = model.get_layer(name).kernel.numpy()
        sigma = np.sqrt(variance)
        assert abs(kernel.std() - sigma) < std_tolerance(kernel.size, sigma), name
        assert word in rows_by(report, name)["scheme"], (name, rows_by(report, name))
    assert all(model.get_layer(n).bias.numpy().max() == 0 for n in expected)
    bn = model.layers[3]
    assert bn.gamma.numpy().min() == 1 and bn.moving_variance.numpy().min() == 1


def test_plain_kernels_are_scaled_orthogonal_unless_asked_otherwise():
    model = keras.Sequential([keras.Input((4, 64)), L.Dense(64, activation="relu"),
                              L.Dense(256, activation="selu"), L.Conv1D(8, 1),
                              L.Dense(16, activation="tanh")])
    report = keras_initkit.reinitialize(model, seed=0)
    assert all("orthogonal draw" in r["scheme"] for r in report if r["weight"] == "kernel")
    relu, selu = model.layers[0].kernel.numpy(), model.layers[1].kernel.numpy()
    np.testing.assert_allclose(relu.T @ relu, 2 * np.eye(64), atol=1e-4)  # He: var 2 / 64
    # Wider than its input: orthonormal rows, and each unit's weights have norm^2 1 (LeCun).
    np.testing.assert_allclose(selu @ selu.T, 4 * np.eye(64), atol=1e-4)
    np.testing.assert_allclose((selu ** 2).sum(axis=0).mean(), 1.0, rtol=1e-4)
    keras_initkit.reinitialize(model, seed=0, orthogonal=False)
    relu = model.layers[0].kernel.numpy()
    assert np.abs(relu.T @ relu - 2 * np.eye(64)).max() > 0.1  # an i.i.d. draw is not
    limit = np.sqrt(6 / (8 + 16)) * 5 / 3  # tanh: Glorot uniform times 5/3, bounded
    assert np.abs(model.layers[3].kernel.numpy()).max() <= limit + 1e-6


def test_fans_of_the_layouts_a_shape_gets_wrong():
    model = keras.Sequential([
        keras.Input((8, 8, 6)),
        L.Conv2DTranspose(4, (3, 5), name="transpose"),  # kernel (3, 5, out=4, in=6)
        L.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),  # (3, 3, 4, 2)
        L.SeparableConv2D(5, 3, depth_multiplier=3, name="separable"),
        L.Reshape((-1, 5)),
        L.EinsumDense("abc,cd->abd", output_shape=(None, 7), name="einsum"),
    ])
    report = keras_initkit.reinitialize(model, seed=0)
    fans = {(r["layer"].rsplit("/", 1)[-1], r["weight"]): (r["fan_in"], r["fan_out"])
            for r in report}
    assert fans["transpose", "kernel"] == (15 * 6, 15 * 4)
    assert fans["depthwise", "kernel"] == (9, 9 * 2)
    assert fans["separable", "depthwise_kernel"] == (9, 9 * 3)
    assert fans["separable", "pointwise_kernel"] == (8 * 3, 5)  # 4 channels x 2 in
    assert fans["einsum", "kernel"] == (5, 7)


def test_each_gate_block_is_drawn_on_its_own():
    model = keras.Sequential([keras.Input((5, 16)), L.LSTM(32, return_sequences=True),
                              L.GRU(32)])
    keras_initkit.reinitialize(model, seed=0)
    for layer, gates in ((model.layers[0], 4), (model.layers[1], 3)):
        recurrent = layer.cell.recurrent_kernel.numpy()
        for g in range(gates):  # each (32, 32) block is orthogonal, not the (32, 128) whole
            block = recurrent[:, 32 * g: 32 * (g + 1)]
            np.testing.assert_allclose(block.T @ block, np.eye(32), atol=1e-5)
        kernel = layer.cell.kernel.numpy()  # Glorot uniform on (in, 32) blocks
        limit = np.sqrt(6 / (kernel.shape[0] + 32))  # not sqrt(6 / (in + 32 * gates))
        assert limit * 0.95 < np.abs(kernel).max() <= limit + 1e-6
    bias = model.layers[0].cell.bias.numpy()
    np.testing.assert_array_equal(bias[32:64], 1.0)  # unit_forget_bias
    assert not bias[:32].any() and not bias[64:].any()


def test_elu_depth_keeps_its_pre_activation_variance_level():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((256,))] + [L.Dense(256, activation="elu")
                                                      for _ in range(40)])
    data = np.random.default_rng(0).normal(size=(512, 256)).astype("float32")

    def pre_activation_variances(scheme, seed):
        keras_initkit.reinitialize(model, scheme, seed=seed)
        x, variances = data, []
        for layer in model.layers:
            z = x @ layer.kernel.numpy()
            variances.append(z.var())
            x = keras.ops.convert_to_numpy(keras.activations.elu(z))
        return np.array(variances)

    # The gain g solves E[elu(g z)^2] = 1: from N(0, 1) data every layer sits near g^2. Width
    # 256 leaves a random walk about that level, so one draw can wander: judge five.
    g2 = keras_initkit.fans.unit_moment_gain("elu") ** 2
    auto = [pre_activation_variances("auto", seed) for seed in range(5)]
    assert np.median([v.max() / v.min() for v in auto]) < 1.5, auto
    assert abs(np.median([v.mean() for v in auto]) / g2 - 1) < 0.15, auto
    he = pre_activation_variances("kit_he", 0)  # the naive choice drifts by a large factor
    assert he.max() / he.min() > 10


def test_a_gelu_stack_stays_level_where_the_plain_gain_drifts():
    def post_activation_stds(activation, g):
        rng = np.random.default_rng(0)
        x, stds = rng.normal(size=(256, 384)), []
        for _ in range(30):
            x = keras.ops.convert_to_numpy(getattr(keras.activations, activation)(
                (x @ (rng.normal(size=(384, 384)) * g / np.sqrt(384))).astype("float32")))
            stds.append(x.std())
        return np.array(stds)

    level = post_activation_stds("gelu", keras_initkit.fans.unit_moment_gain("gelu"))
    drift = post_activation_stds("gelu", keras_initkit.gain("gelu"))
    assert level.max() / level.min() < 2.5 < 4 < drift.max() / drift.min()


def test_a_tanh_stack_starts_on_its_fixed_point():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((384,))] + [L.Dense(384, activation="tanh")
                                                      for _ in range(30)])
    report = keras_initkit.reinitialize(model, seed=0)
    assert "first layer" in report[0]["scheme"] and "first layer" not in report[2]["scheme"]
    x = np.random.default_rng(0).normal(size=(256, 384)).astype("float32")
    stds = [keras.ops.convert_to_numpy(out).std() for out in keras.Model(
        model.inputs[0], [layer.output for layer in model.layers])(x)]
    # Without the first-layer start the std falls 14% over the depth (measured: 0.86x).
    assert max(stds) / min(stds) < 1.06, stds


def test_a_bad_network_becomes_healthy():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((128,))] + [
        L.Dense(128, activation="relu", kernel_initializer=keras.initializers.RandomNormal(0, 0.01))
        for _ in range(20)] + [L.Dense(10)])
    x = np.random.default_rng(0).normal(size=(128, 128)).astype("float32")
    before = keras_initkit.diagnose(model, x)
    assert {f.kind for f in before.findings} & {"vanishing"}
    keras_initkit.reinitialize(model, seed=0)
    assert keras_initkit.diagnose(model, x).healthy


def test_nested_subclassed_and_applications():
    inner = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu", name="in_a")],
                             name="inner")
    inputs = keras.Input((8,))
    nested = keras.Model(inputs, L.Dense(2, name="out")(inner(inputs)))

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = L.Dense(16, activation="selu")

        def call(self, x):
            return self.a(x)

    sub = Net()
    sub(np.zeros((1, 8), "float32"))
    for model, count in ((nested, 4), (sub, 2)):
        before = [w.copy() for w in model.get_weights()]
        report = keras_initkit.reinitialize(model, seed=0)
        assert len(report) == count
        assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert "lecun" in report[0]["scheme"]
    app = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35)
    report = keras_initkit.reinitialize(app, seed=0)
    assert len(report) == len(app.weights)


def test_seed_layers_and_biases_options():
    def build():
        keras.utils.set_random_seed(3)
        return keras.Sequential([keras.Input((8,)), L.Dense(64, name="a"), L.Dense(64, name="b",
                                 bias_initializer="ones")])

    one, two = build(), build()
    keras_initkit.reinitialize(one, seed=5)
    keras_initkit.reinitialize(two, seed=5)
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(one.layers[0].kernel.numpy()[:8, :64],
                              one.layers[1].kernel.numpy()[:8])  # independent draws
    three = build()
    b_kernel = three.layers[1].kernel.numpy().copy()
    report = keras_initkit.reinitialize(three, "kit_orthogonal", layers=["a"], biases="keep")
    np.testing.assert_array_equal(three.layers[1].kernel.numpy(), b_kernel)
    np.testing.assert_array_equal(three.layers[1].bias.numpy(), 1.0)
    q = three.layers[0].kernel.numpy()
    np.testing.assert_allclose(q @ q.T, np.eye(8), atol=1e-5)
    assert [r["scheme"] for r in report] == ["kit_orthogonal", "keep"]  # the kept bias listed


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(scheme="kit_hee"), ValueError, "kit_he"),
    (dict(scheme=3), TypeError, "scheme"),
    (dict(seed=-1), ValueError, "seed=-1"),
    (dict(layers=["nope"]), ValueError, "'nope'"),
    (dict(biases="ones_please"), ValueError, "biases"),
    (dict(orthogonal="yes"), TypeError, "orthogonal='yes'"),
])
def test_bad_arguments_are_named(kwargs, error, words):
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    with pytest.raises(error, match=words):
        keras_initkit.reinitialize(model, **kwargs)


def test_unbuilt_and_non_models_are_refused():
    with pytest.raises(ValueError, match="not built"):
        keras_initkit.reinitialize(keras.Sequential([L.Dense(3)]))
    with pytest.raises(TypeError, match="keras.Model"):
        keras_initkit.reinitialize(L.Dense(3))


def test_auto_resets_norms_known_by_what_they_do_and_lists_what_it_keeps():
    import keras_hub

    model = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=1, num_query_heads=2,
                                           num_key_value_heads=2, hidden_dim=16,
                                           intermediate_dim=32)
    norm = model.get_layer("sequence_output_layernorm")
    norm.scale.assign(np.full(norm.scale.shape, 3.0, "float32"))  # as if trained
    rows = keras_initkit.reinitialize(model, seed=0)
    assert (norm.scale.numpy() == 1.0).all()
    listed = {(r["layer"], r["weight"]) for r in rows}
    assert all((layer_path(v_layer), v.path.rsplit("/", 1)[-1]) in listed
               for v_layer in flat_layers(model) for v in own_variables(v_layer))


def test_layers_that_are_not_names_are_refused_naming_the_argument():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    with pytest.raises(TypeError, match="`layers` must be.*received layers=5"):
        keras_initkit.reinitialize(model, layers=5)


def test_a_frozen_layer_is_kept_and_listed():
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.Input((8,)), L.Dense(16, name="pretrained")],
                                name="backbone")
    backbone.trainable = False
    model = keras.Sequential([keras.Input((8,)), backbone, L.Dense(4, name="head")])
    before = backbone.layers[0].kernel.numpy().copy()
    rows = keras_initkit.reinitialize(model, seed=0)
    np.testing.assert_array_equal(backbone.layers[0].kernel.numpy(), before)
    frozen = [r for r in rows if r["layer"].endswith("pretrained")]
    assert [r["scheme"] for r in frozen] == ["keep (frozen layer)"] * 2


def test_a_named_scheme_draws_on_the_layers_fans_and_reports_the_fans_it_used():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 64)), L.DepthwiseConv2D(3, name="dw")])
    rows = keras_initkit.reinitialize(model, "kit_he_normal", seed=0, biases="keep")
    kernel = model.get_layer("dw").kernel.numpy()
    std = math.sqrt(2 / 9)  # one input channel per output: fan_in is the kernel area
    assert abs(kernel.std() - std) <= 6 * std / math.sqrt(2 * kernel.size)
    assert rows[0]["fan_in"] == 9
    # An initializer without input_axes draws on the plain shape: the row says so.
    rows = keras_initkit.reinitialize(model, keras.initializers.RandomNormal(), biases="keep")
    assert rows[0]["fan_in"] == 9 * 64
