"""µP: shapes, per-weight learning rates against microsoft/mup 1.0.0, the µP draw, the coordinate
check, and MuReadout through save and reload."""
import math
import os

import keras
import numpy as np
import pytest

from keras_initkit import mup
from keras_initkit.cli import main

L = keras.layers


def keras_mlp(w1, w2, readout_zero_init=False):
    inputs = keras.Input((8,))
    h = L.Dense(w1, activation="relu")(inputs)
    h = L.Dense(w2, activation="relu")(h)
    return keras.Model(inputs, mup.MuReadout(5, readout_zero_init=readout_zero_init)(h))


@pytest.mark.parametrize("rule", ["adam", "sgd"])
def test_learning_rates_equal_mups_parameter_groups(rule):
    torch = pytest.importorskip("torch")
    torch_mup = pytest.importorskip("mup")

    def torch_mlp(w1, w2):
        return torch.nn.Sequential(torch.nn.Linear(8, w1), torch.nn.ReLU(),
                                   torch.nn.Linear(w1, w2), torch.nn.ReLU(),
                                   torch_mup.MuReadout(w2, 5))

    # Two widths that grow by different factors (4 and 2), so that SGD's fan-in / fan-out
    # ratio is not 1.
    reference = torch_mlp(64, 32)
    torch_mup.set_base_shapes(reference, torch_mlp(16, 16))
    optimizer = (torch_mup.MuAdam if rule == "adam" else torch_mup.MuSGD)(
        reference.parameters(), lr=1.0)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    expected = [lr_of[id(p)] for p in reference.parameters()]

    model = keras_mlp(64, 32)
    mup.set_base_shapes(model, keras_mlp(16, 16), seed=0)
    ours = [mup.lr_multiplier(v, rule) for v in model.weights]
    assert ours == pytest.approx(expected, rel=1e-12)
    assert len(set(ours)) > 1  # the test compares something


@pytest.mark.parametrize("ours,plain", [(mup.MuAdam, keras.optimizers.Adam),
                                        (mup.MuSGD, keras.optimizers.SGD)])
def test_the_optimizers_apply_the_multipliers(ours, plain):
    model = keras_mlp(64, 32)
    mup.set_base_shapes(model, keras_mlp(16, 16), seed=0)
    start = [v.numpy().copy() for v in model.weights]
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    y = np.random.default_rng(1).normal(size=(16, 5)).astype("float32")
    steps = {}
    for cls in (ours, plain):
        for v, value in zip(model.weights, start):
            v.assign(value)
        model.compile(optimizer=cls(learning_rate=1e-3), loss="mse")
        model.train_on_batch(x, y)
        steps[cls] = [v.numpy() - value for v, value in zip(model.weights, start)]
    rule = "adam" if ours is mup.MuAdam else "sgd"
    for v, a, b, value in zip(model.weights, steps[ours], steps[plain], start):
        ulp = np.finfo("float32").eps * max(1e-3, np.abs(value).max())  # w_new - w_old rounds
        np.testing.assert_allclose(a, mup.lr_multiplier(v, rule) * b, rtol=1e-5, atol=4 * ulp,
                                   err_msg=v.path)


def test_set_base_shapes_draws_by_mup():
    model = keras_mlp(256, 512)
    mup.set_base_shapes(model, keras_mlp(32, 64), seed=0)
    dense, dense_1, readout = [layer for layer in model.layers if layer.weights]
    hidden = dense_1.kernel.numpy()
    std = math.sqrt(2 / 256)  # He: var 2 / fan_in, for the ReLU after it
    assert abs(hidden.std() - std) <= 6 * std / math.sqrt(2 * hidden.size)
    shape = mup.infshape(dense_1.kernel)
    assert shape.ninf() == 2 and shape.width_mult() == 256 / 32
    assert mup.infshape(dense.kernel).ninf() == 1  # 8 inputs: a fixed fan-in
    assert readout.width_mult == 512 / 64
    assert np.abs(readout.kernel.numpy()).max() <= 1 / math.sqrt(64)  # U(+-1/sqrt(base))
    assert not any(layer.bias.numpy().any() for layer in (dense, dense_1, readout))

    zero = keras_mlp(256, 512, readout_zero_init=True)
    mup.set_base_shapes(zero, keras_mlp(32, 64))
    assert not zero.layers[-1].kernel.numpy().any()

    with pytest.raises(ValueError, match="architecture"):
        mup.set_base_shapes(model, keras.Sequential([keras.Input((8,)), L.Dense(4)]))
    with pytest.raises(TypeError, match="base"):
        mup.set_base_shapes(model, "base")
    with pytest.raises(TypeError, match="`base`.*NoneType"):
        mup.set_base_shapes(model, None)
    with pytest.raises(TypeError, match="rescale_params='no'"):
        mup.set_base_shapes(model, keras_mlp(32, 64), rescale_params="no")
    with pytest.raises(ValueError, match="seed=1.5"):
        mup.set_base_shapes(model, keras_mlp(32, 64), seed=1.5)
    with pytest.raises(ValueError, match="width_mult"):
        mup.MuReadout(3, width_mult=0)

    def plain_head(width):
        inputs = keras.Input((8,))
        return keras.Model(inputs, L.Dense(5, name="head")(L.Dense(width)(inputs)))
    # mup's assert_hidden_size_inf: a plain Dense that reads the width out is not µP.
    refused = plain_head(256)
    with pytest.raises(ValueError, match="'head'.*width fan-in.*must be.*MuReadout.*Dense"):
        mup.set_base_shapes(refused, plain_head(64))
    assert all(mup.infshape(v) is None for v in refused.weights)  # nothing half-recorded


def test_a_width_mult_set_after_predict_reaches_fit_and_predict():
    model, x = keras_mlp(64, 64), np.ones((2, 8), "float32")
    model.compile(optimizer="sgd", loss="mse")
    model.predict(x, verbose=0)  # traced with width_mult 1
    mup.set_base_shapes(model, keras_mlp(16, 16), seed=1)
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x), rtol=1e-6)


def test_mup_imports_as_the_readme_names_it():
    import keras_initkit.mup as imported
    from keras_initkit.mup import set_base_shapes

    assert imported is mup and set_base_shapes is mup.set_base_shapes


def test_mu_readout_survives_a_keras_round_trip(tmp_path):
    model = keras_mlp(64, 64)
    mup.set_base_shapes(model, keras_mlp(16, 16), seed=1)
    path = tmp_path / "mup.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.layers[-1].width_mult == 4.0
    x = np.ones((2, 8), "float32")
    np.testing.assert_allclose(restored(x), model(x), rtol=1e-6)


def test_coord_check_is_flat_under_mup_and_grows_under_the_standard_parametrization():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = rng.integers(0, 5, 128)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    widths = [64, 128, 256, 512, 1024]

    def build_mu(width):
        keras.utils.set_random_seed(0)
        model = keras_mlp(width, width, readout_zero_init=True)
        return mup.set_base_shapes(model, keras_mlp(64, 64, readout_zero_init=True), seed=0)

    def build_sp(width):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8,))
        h = L.Dense(width, activation="relu")(L.Dense(width, activation="relu")(inputs))
        return keras.Model(inputs, L.Dense(5)(h))

    mu = mup.coord_check(build_mu, widths, x, y, steps=3, loss=loss,
                         optimizer=lambda: mup.MuAdam(learning_rate=1e-2))
    sp = mup.coord_check(build_sp, widths, x, y, steps=3, loss=loss,
                         optimizer=lambda: keras.optimizers.Adam(learning_rate=1e-2))
    assert mu.worst_slope() < 0.1
    assert sp.worst_slope(step=1) < 0.7 and sp.worst_slope(step=3) > 0.7
    assert {r["width"] for r in mu.records} == set(widths)
    with pytest.raises(ValueError, match="widths"):
        mup.coord_check(build_mu, [64], x, y)


def test_initkit_coord_check(tmp_path, capsys):
    out = tmp_path / "cc"
    assert main(["coord-check", "--widths", "32,64", "--steps", "2", "--out", str(out)]) == 0
    assert {"coord_check.png", "coord_check.json"} <= set(os.listdir(out))
    assert "step 2" in capsys.readouterr().out
    assert main(["coord-check", "--widths", "32,x", "--out", str(out)]) == 2


def test_coord_check_agrees_with_mups_own_on_the_same_mlp():
    torch = pytest.importorskip("torch")
    pytest.importorskip("pandas")
    from mup.coord_check import get_coord_data
    torch_mup = pytest.importorskip("mup")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = rng.integers(0, 5, 128)
    widths = [64, 128, 256, 512, 1024]

    def torch_mlp(width, mu):
        head = torch_mup.MuReadout(width, 5, readout_zero_init=True) if mu else \
            torch.nn.Linear(width, 5)
        return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(),
                                   torch.nn.Linear(width, width), torch.nn.ReLU(), head)

    def lazy(width, mu):
        def make():
            torch.manual_seed(0)
            model = torch_mlp(width, mu)
            if mu:
                torch_mup.set_base_shapes(model, torch_mlp(64, mu))
            return model
        return make

    def slopes(frame, t):
        frame = frame[(frame.t == t) & (frame.l1 > 0)]
        return [np.polyfit(np.log(g.width), np.log(g.l1), 1)[0] for _, g in
                frame.groupby("module") if len(g) > 1]

    data = [(torch.tensor(x), torch.tensor(y))]
    theirs = {mu: get_coord_data({w: lazy(w, mu) for w in widths}, data, optimizer="adam",
                                 lr=1e-2, mup=mu, nsteps=3, cuda=False, show_progress=False)
              for mu in (True, False)}

    def keras_build(mu):
        def build(width):
            keras.utils.set_random_seed(0)
            inputs = keras.Input((8,))
            h = L.Dense(width, activation="relu")(L.Dense(width, activation="relu")(inputs))
            head = mup.MuReadout(5, readout_zero_init=True) if mu else L.Dense(5)
            model = keras.Model(inputs, head(h))
            if mu:
                base = keras.Model(inputs, mup.MuReadout(5, readout_zero_init=True)(
                    L.Dense(64, activation="relu")(L.Dense(64, activation="relu")(inputs))))
                mup.set_base_shapes(model, base, seed=0)
            return model
        return build

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ours = {mu: mup.coord_check(keras_build(mu), widths, x, y, steps=3, loss=loss,
                                optimizer=(lambda: mup.MuAdam(learning_rate=1e-2)) if mu else
                                (lambda: keras.optimizers.Adam(learning_rate=1e-2)))
            for mu in (True, False)}
    # The same verdict on both sides: flat under µP at every step, and under the standard
    # parametrization a layer that grows with width by the last step. mup's own check reads
    # 0.102 at its second ReLU already at step 1 (torch's default U(+-1/sqrt(fan_in)) draw at
    # finite width), ours, with He draws, at most 0.05.
    for t in (1, 2, 3):
        assert max(abs(s) for s in slopes(theirs[True], t)) < 0.15
        assert ours[True].worst_slope(step=t) < 0.1
    assert max(slopes(theirs[False], 3)) > 0.7 and ours[False].worst_slope(step=3) > 0.7
