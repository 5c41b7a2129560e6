"""The textbook failures are flagged, and healthy networks raise no alarm."""
import json

import keras
import numpy as np
import pytest
from nets import batch, mlp

import keras_initkit
from keras_initkit.diagnostics import Thresholds

L = keras.layers


def model_layer(report, i):
    return report.layers[i]["layer"]


def kinds(report):
    return {(f.kind, f.signal) for f in report.findings}


def test_glorot_relu_stack_vanishes_and_names_the_layer_and_remedy():
    report = keras_initkit.diagnose(mlp("kit_glorot_normal"), batch())
    vanishing = [f for f in report.findings if f.kind == "vanishing"]
    assert vanishing and vanishing[0].signal == "activation"
    depth = [row["layer"] for row in report.layers].index(vanishing[0].layer)
    assert 8 <= depth <= 16  # ReLU halves the variance per layer: 1e-2 is crossed near 13
    assert vanishing[0].value < vanishing[0].threshold == 1e-2
    assert "kit_he" in vanishing[0].message and vanishing[0].layer in vanishing[0].message
    # It trains, slower (He et al. 2015; docs/severity_calibration.md): a warning.
    assert vanishing[0].severity == "warning" and report.healthy


def test_a_narrow_he_stack_is_not_told_to_use_he():
    # He weights keep the scale only on average: eight units wide, 40 deep, the signal dies
    # all the same. The remedy is then normalization or skip connections, not kit_he again.
    report = keras_initkit.diagnose(mlp("kit_he", depth=40, width=8), batch())
    vanishing = next(f for f in report.findings if (f.kind, f.signal) == ("vanishing",
                                                                          "activation"))
    assert "already scale for relu layers (kernel RMS" in vanishing.message
    assert "normalization" in vanishing.message
    assert "use kit_he" not in vanishing.message
    # The same shape with Glorot weights (too small for ReLU) is still told to use kit_he.
    glorot = mlp("kit_glorot_normal", depth=40, width=8)
    report = keras_initkit.diagnose(glorot, batch())
    vanishing = next(f for f in report.findings if (f.kind, f.signal) == ("vanishing",
                                                                          "activation"))
    assert "use kit_he" in vanishing.message
    # Judged on the weights it holds: re-drawn with He, its config still says Glorot.
    keras_initkit.reinitialize(glorot, "kit_he", seed=0)
    report = keras_initkit.diagnose(glorot, batch())
    messages = " ".join(f.message for f in report.findings)
    assert "already scale for relu layers" in messages and "use kit_he" not in messages


def test_a_dense_layer_followed_by_a_relu_layer_is_advised_for_relu():
    keras.utils.set_random_seed(0)
    small = keras.initializers.RandomNormal(0, 0.01)
    model = keras.Sequential([keras.Input((128,))] + [
        layer for _ in range(20) for layer in (L.Dense(128, kernel_initializer=small), L.ReLU())])
    vanishing = next(f for f in keras_initkit.diagnose(model, batch()).findings
                     if (f.kind, f.signal) == ("vanishing", "activation"))
    assert "use kit_he for ReLU layers" in vanishing.message, vanishing.message


def test_small_normal_relu_stack_vanishes_and_is_told_to_use_he():
    # N(0, 0.01) at fan-in 128: each ReLU layer keeps 0.01 * sqrt(128 / 2) = 0.08 of the RMS.
    report = keras_initkit.diagnose(mlp(keras.initializers.RandomNormal(0, 0.01)), batch())
    vanishing = next(f for f in report.findings if (f.kind, f.signal) == ("vanishing",
                                                                          "activation"))
    assert [row["layer"] for row in report.layers].index(vanishing.layer) <= 2
    assert "use kit_he" in vanishing.message
    # Further on the signal falls below 3e-7 of the input's: it does not train, an error.
    assert vanishing.severity == "error" and vanishing.value < vanishing.threshold == 3e-7
    assert not report.healthy


def test_small_normal_tanh_stack_vanishes_in_activations_and_gradients():
    report = keras_initkit.diagnose(mlp(keras.initializers.RandomNormal(0, 0.01), "tanh"),
                                    batch())
    assert {("vanishing", "activation"), ("vanishing", "gradient")} <= kinds(report)


def test_unit_variance_weights_explode():
    report = keras_initkit.diagnose(
        mlp(keras.initializers.RandomNormal(0, 1), depth=6, width=512), batch())
    assert ("exploding", "activation") in kinds(report)
    finding = next(f for f in report.findings if f.kind == "exploding")
    assert finding.value > 100 and "kit_he" in finding.message


def test_one_wide_layer_with_unit_variance_weights_is_too_large():
    # N(0, 1) at fan_in 1024: RMS x 32 before the ReLU, x 23 after it.
    model = mlp(keras.initializers.RandomNormal(0, 1), depth=1, width=1024, inputs=1024)
    report = keras_initkit.diagnose(model, batch(features=1024))
    exploding = [f for f in report.findings if f.kind == "exploding"]
    assert len(exploding) == 1 and exploding[0].layer == model.layers[0].name
    assert exploding[0].value > 10 and "kit_he" in exploding[0].message
    # The same layer with He weights is healthy: the rule is the weights, not the width.
    assert keras_initkit.diagnose(mlp("kit_he", depth=1, width=1024, inputs=1024),
                                  batch(features=1024)).healthy


def test_saturated_tanh_stack():
    report = keras_initkit.diagnose(mlp(keras.initializers.RandomNormal(0, 1), "tanh", depth=5),
                                    batch())
    saturated = [f for f in report.findings if f.kind == "saturated"]
    # One finding, at the first layer, which says how many more are saturated.
    assert len(saturated) == 1 and saturated[0].value > 0.5
    assert saturated[0].layer == model_layer(report, 0)
    assert "kit_glorot" in saturated[0].message
    assert "Also saturated: 4 later layers" in saturated[0].message


def test_zero_weights_leave_every_relu_dead():
    report = keras_initkit.diagnose(mlp("kit_zeros", depth=4), batch())
    dead = [f for f in report.findings if f.kind == "dead" and f.signal == "activation"]
    assert len(dead) == 1 and dead[0].value == 1.0 and dead[0].layer == model_layer(report, 0)
    assert "Use kit_he with zero biases" in dead[0].message  # zeros are not He weights
    rest = [f"'{row['path']}' (100%)" for row in report.layers[1:]]
    assert dead[0].message.endswith(f"Also dead: {', '.join(rest)}.")


def test_biases_that_kill_every_unit_are_named_not_the_weights():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((128,))] + [
        L.Dense(64, activation="relu", bias_initializer=keras.initializers.Constant(-10.0),
                name=f"dense{i}") for i in range(4)], name="net")
    report = keras_initkit.diagnose(model, batch())
    messages = [f.message for f in report.findings if f.kind in ("dead", "vanishing")]
    assert messages and all("biases of 'net/dense0' (RMS 10)" in m and
                            "start the biases at zero" in m for m in messages), messages


def test_a_batch_too_small_to_tell_dead_from_quiet_gets_no_dead_verdict():
    # One sample: about half of a healthy He/ReLU layer's units are zero for "every sample".
    # A whole dead layer (zero weights) is judged once the batch holds 8 samples or more.
    healthy, dead = mlp("kit_he", depth=4), mlp("kit_zeros", depth=4)
    x = batch(n=16)
    row = keras_initkit.diagnose(healthy, x[:1]).layers[0]
    assert row["dead_fraction"] > 0.4  # what the rule would have judged
    assert ("dead", "activation") not in kinds(keras_initkit.diagnose(healthy, x[:1]))
    assert ("dead", "activation") not in kinds(keras_initkit.diagnose(dead, x[:7]))
    assert ("dead", "activation") in kinds(keras_initkit.diagnose(dead, x[:8]))


def test_one_finding_per_kind_at_the_first_layer_however_many_are_dead():
    # A narrow deep He/ReLU stack: dozens of layers past 40% dead, flickering around it. One
    # finding names the first and counts the rest, which the report's rows all show.
    report = keras_initkit.diagnose(mlp("kit_he", depth=150, width=64, inputs=64),
                                    batch(n=32, features=64))
    dead_rows = [row for row in report.layers if row["dead_fraction"] > 0.4]
    assert len(dead_rows) > 4
    dead = [f for f in report.findings if f.kind == "dead"]
    assert len(dead) == 1 and dead[0].layer == dead_rows[0]["layer"]
    assert f"Also dead: {len(dead_rows) - 1} later layers, through '{dead_rows[-1]['path']}'" \
        in dead[0].message
    pairs = [(f.kind, f.signal) for f in report.findings]
    assert len(pairs) == len(set(pairs))
    # Its weights are He already: the remedy is not kit_he again.
    assert "already scale for ReLU (kernel RMS" in dead[0].message
    assert "Use kit_he" not in dead[0].message


def test_nan_in_the_data_names_the_first_layer():
    model = mlp("kit_he", depth=5)
    x = batch()
    x[3, 7] = np.nan
    report = keras_initkit.diagnose(model, x)
    nonfinite = [f for f in report.findings if f.kind == "nonfinite" and f.signal == "activation"]
    assert len(nonfinite) == 1 and nonfinite[0].layer == model.layers[0].name
    assert ("nonfinite", "gradient") in kinds(report)


def test_a_nan_weight_gets_no_backward_scale_verdict_beside_its_own():
    model = mlp("kit_he", depth=8, width=64, inputs=128)
    kernel = model.layers[4].kernel.numpy()
    kernel[3, 5] = np.nan
    model.layers[4].kernel.assign(kernel)
    report = keras_initkit.diagnose(model, batch())
    assert ("nonfinite", "weight") in kinds(report)
    assert not any(f.signal == "gradient" and f.kind in ("vanishing", "exploding")
                   for f in report.findings), report.findings


def test_nan_in_a_moving_statistic_is_an_error_although_training_mode_hides_it():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((128,)), L.Dense(64, activation="relu"),
                              L.BatchNormalization(name="bn"), L.Dense(10)])
    assert keras_initkit.diagnose(model, batch()).healthy
    variance = np.ones(64, "float32")
    variance[5] = np.nan
    model.get_layer("bn").moving_variance.assign(variance)
    report = keras_initkit.diagnose(model, batch())
    (finding,) = [f for f in report.findings if (f.kind, f.signal) == ("nonfinite", "weight")]
    assert finding.layer == "bn" and "bn/moving_variance" in finding.message
    assert not report.healthy


@pytest.mark.parametrize("init,activation", [("kit_he", "relu"), ("kit_lecun_normal", "selu"),
                                             ("kit_lecun_normal", "tanh")])
def test_healthy_mlps_raise_no_alarm(init, activation):
    report = keras_initkit.diagnose(mlp(init, activation, depth=30), batch())
    assert report.healthy, report.table()


def test_a_cnn_with_batchnorm_is_healthy_whatever_the_input_scale():
    keras.utils.set_random_seed(0)
    L = keras.layers
    layers = [keras.Input((16, 16, 3)), L.Rescaling(1 / 255)]
    for _ in range(6):
        layers += [L.Conv2D(16, 3, padding="same", kernel_initializer="kit_he"),
                   L.BatchNormalization(), L.ReLU()]
    layers += [L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")]
    x = np.random.default_rng(0).uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    report = keras_initkit.diagnose(keras.Sequential(layers), x)
    assert report.healthy, report.table()


@pytest.mark.slow
def test_resnet50_at_initialization_is_healthy():
    model = keras.applications.ResNet50(weights=None)
    x = np.random.default_rng(0).normal(size=(4, 224, 224, 3)).astype("float32")
    report = keras_initkit.diagnose(model, x)
    assert report.healthy, report.table()
    assert np.median([row["std"] for row in report.layers]) == pytest.approx(1.0, abs=0.2)


def test_thresholds_are_arguments():
    model, x = mlp("kit_he", depth=10), batch()
    assert keras_initkit.diagnose(model, x).healthy
    strict = keras_initkit.diagnose(model, x, vanishing_ratio=0.99)
    assert ("vanishing", "activation") in kinds(strict)
    assert strict.findings[0].threshold == 0.99


@pytest.mark.parametrize("kwargs,error,word", [
    ({"vanishing_ratio": 0}, ValueError, "vanishing_ratio"),
    ({"dead_fraction": 1.5}, ValueError, "dead_fraction"),
    ({"exploding_ratio": 0.5}, ValueError, "exploding_ratio"),
    ({"vanish_ratio": 0.1}, TypeError, "vanish_ratio"),
])
def test_bad_thresholds(kwargs, error, word):
    with pytest.raises(error, match=word):
        keras_initkit.diagnose(mlp("kit_he", depth=2, width=8, inputs=8), batch(8, 8), **kwargs)


def test_report_table_dict_and_plot():
    report = keras_initkit.diagnose(mlp(keras.initializers.RandomNormal(0, 0.01), depth=20),
                                    batch())
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["healthy"] is False and len(data["layers"]) == 20
    assert "error" in {f["severity"] for f in data["findings"]}
    assert data["findings"][0]["kind"] == report.findings[0].kind
    assert data["thresholds"] == Thresholds().__dict__
    table = report.table()
    assert report.layers[-1]["layer"] in table and "vanishing" in table
    figure = report.plot()
    assert len(figure.axes) == 2 and figure.axes[0].get_yscale() == "log"
    assert len(figure.axes[0].lines[0].get_xdata()) == 20


def test_inputs_on_different_scales_raise_no_alarm():
    keras.utils.set_random_seed(0)
    a, b = keras.Input((32,)), keras.Input((32,))
    L = keras.layers
    left = L.Dense(64, activation="relu", kernel_initializer="kit_he")(a)
    right = L.Dense(64, activation="relu", kernel_initializer="kit_he")(b)
    out = L.Dense(1)(L.Concatenate()([left, right]))
    model = keras.Model([a, b], out)
    x = [batch(64, 32), 300.0 * batch(64, 32, seed=1)]
    for inputs in (x, x[::-1]):
        report = keras_initkit.diagnose(model, inputs)
        assert report.healthy, report.table()


def test_a_residual_branch_scaled_down_on_purpose_is_no_alarm():
    # LayerScale / ReZero: the branch starts near zero and the skip carries the signal.
    def net(tiny_on_main_path):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((128,))
        x = keras.layers.Dense(128, activation="relu", kernel_initializer="kit_he")(inputs)
        tiny = keras.layers.Dense(128, kernel_initializer=keras.initializers.RandomNormal(0, 1e-6))
        if tiny_on_main_path:
            x = tiny(x)
        else:
            x = keras.layers.Add()([x, tiny(x)])
        return keras.Model(inputs, keras.layers.Dense(10, kernel_initializer="kit_lecun_normal")(x))

    assert keras_initkit.diagnose(net(False), batch()).healthy
    vanishing = [f for f in keras_initkit.diagnose(net(True), batch()).findings
                 if f.kind == "vanishing" and f.signal == "activation"]
    assert len(vanishing) == 1 and vanishing[0].value < 1e-4


@pytest.mark.parametrize("branch_first", [False, True])
def test_the_order_of_a_residual_sum_does_not_change_the_verdict(branch_first):
    # keras.io writes layers.add([x, residual]) and layers.add([residual, x]) alike.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,))
    h = inputs
    for _ in range(4):
        b = L.Dense(32, activation="relu", kernel_initializer="he_normal")(h)
        b = L.Dense(32, kernel_initializer=keras.initializers.RandomNormal(0, 1e-7))(b)
        h = L.Add()([b, h] if branch_first else [h, b])
    model = keras.Model(inputs, L.Dense(10)(h))
    assert keras_initkit.diagnose(model, batch(64, 32)).findings == []


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_float32_variables_and_float16_overflow(policy):
    # Variables stay float32 with the promised statistics; a float16 overflow (65504) becomes a
    # nonfinite finding on the layer where it happens, and nothing past it is judged on scale.
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        big = keras.initializers.RandomNormal(stddev=30.0)
        model = keras.Sequential([
            keras.Input((512,)),
            keras.layers.Dense(512, activation="relu", kernel_initializer="kit_he", name="he"),
            keras.layers.Dense(512, kernel_initializer=big, name="big"),
            keras.layers.Dense(512, kernel_initializer=big, name="bigger"),
            keras.layers.Dense(10, name="head")])
        report = keras_initkit.diagnose(model, batch(64, 512))
    finally:
        keras.config.set_dtype_policy("float32")
    kernel = model.get_layer("he").kernel
    assert kernel.dtype == "float32"
    assert abs(float(np.std(kernel.numpy())) - np.sqrt(2 / 512)) < 5 * np.sqrt(2 / 512) / 512
    found = {(f.kind, f.signal, f.layer) for f in report.findings}
    assert ("exploding", "activation", "big") in found
    if policy == "mixed_float16":  # 512 inputs of std 684 times 30: past float16's range
        assert ("nonfinite", "activation", "bigger") in found
        assert not any(f.kind == "vanishing" and f.signal == "activation"
                       for f in report.findings)
    else:  # bfloat16 has float32's range: no overflow
        assert not any(f.kind == "nonfinite" for f in report.findings)


def test_a_finding_has_the_path_of_its_layer_when_two_blocks_share_names():
    def block(name):
        return keras.Sequential([L.Dense(8, activation="relu", name="dense")], name=name)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), block("block_1"), block("block_2")],
                             name="net")
    second = model.get_layer("block_2").get_layer("dense")
    second.bias.assign(np.full((8,), -100.0, "float32"))  # every unit of block_2 is dead
    report = keras_initkit.diagnose(model, batch(32, 8))
    dead = next(f for f in report.findings if f.kind == "dead")
    assert (dead.layer, dead.path) == ("dense", "net/block_2/dense")
    assert report.to_dict()["findings"][0]["path"] == report.findings[0].path
    # The table marks block_2's row, not block_1's of the same name.
    rows = [line for line in report.table().splitlines() if line.startswith("dense ")]
    assert len(rows) == 2 and "dead" not in rows[0] and "dead" in rows[1]
