"""MirroredStrategy on 2 logical CPUs: initializers, diagnose, SignalMonitor, lsuv, reinitialize.

One fresh process (mirrored_script.py) does all the work, because the logical devices
must be set before TensorFlow starts; the tests here judge its measurements.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 300  # an upper bound only, for a busy 2-core machine; it takes about 20 s
FAN_IN, FAN_OUT = 512, 256


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mirrored")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(HERE))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, os.path.join(HERE, "mirrored_script.py"), str(folder / "out.json"),
         str(folder / "logs")], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    with open(folder / "out.json") as f:
        return json.load(f)


def assert_rows_close(a, b):
    """Two lists of report rows agree to float32 tolerance, row for row, on every number
    both rows hold (paths aside: the two models number their layers differently)."""
    assert len(a) == len(b) > 0
    for i, (left, right) in enumerate(zip(a, b)):
        keys = [k for k in left if k in right and
                all(isinstance(row[k], float) or row[k] is None for row in (left, right))]
        assert len(keys) >= 4, (i, sorted(left), sorted(right))
        for key in keys:
            # NaN and Inf: None in to_dict(), themselves in a history
            u, v = (None if x is None or not math.isfinite(x) else x
                    for x in (left[key], right[key]))
            if u is None or v is None:  # both must be
                assert u is v is None, (i, key, u, v)
            else:
                assert u == pytest.approx(v, rel=1e-5, abs=1e-7), (i, key, u, v)


def assert_same_report(a, b):
    """Two `to_dict()` reports agree: verdict, findings, loss and every number."""
    assert a["healthy"] == b["healthy"]
    assert [(f["kind"], f["signal"]) for f in a["findings"]] == \
        [(f["kind"], f["signal"]) for f in b["findings"]]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    for part in ("layers", "weights"):
        assert [sorted(row) for row in a[part]] == [sorted(row) for row in b[part]]
        assert_rows_close(a[part], b[part])


def test_two_replicas(run):
    assert run["replicas_in_sync"] == 2


@pytest.mark.parametrize("alias, std", [
    ("kit_he", math.sqrt(2 / FAN_IN)), ("kit_glorot", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("kit_lecun_normal", math.sqrt(1 / FAN_IN)), ("kit_orthogonal", 1 / math.sqrt(FAN_IN))])
def test_initializers_in_scope_give_identical_mirrored_copies(run, alias, std):
    kernel = run["initializers"][alias]
    assert kernel["kind"] == "MirroredVariable"
    assert [d[-5:] for d in kernel["devices"]] == ["CPU:0", "CPU:1"]
    assert kernel["identical"]
    # 131072 draws: the sample std is within 1% of the promised one (about 5 standard errors).
    assert kernel["std"] == pytest.approx(std, rel=0.01)
    assert abs(kernel["mean"]) < 5 * std / math.sqrt(FAN_IN * FAN_OUT)
    if alias == "kit_orthogonal":
        assert kernel["gram_error"] < 1e-5  # W^T W = I


@pytest.mark.parametrize("strategy, single", [
    ("strategy", "single"), ("strategy_surrogate", "single_surrogate"),
    ("strategy_in_scope", "single")])
def test_diagnose_under_the_strategy_matches_one_device(run, strategy, single):
    # Inside the scope, Keras' losses divide by the replica count: the probe must not.
    assert_same_report(run["diagnose"][strategy], run["diagnose"][single])


def test_diagnose_leaves_the_copies_identical(run):
    assert all(w["identical"] and w["copies"] == 2
               for w in run["diagnose"]["replicas_after"].values())


def test_probe_gradients_are_the_gradients_the_optimizer_applies(run):
    grads = run["gradients"]
    assert len(grads["paths"]) == 6
    for path, on_strategy, on_single, applied in zip(
            grads["paths"], grads["strategy"], grads["single"], grads["applied"]):
        on_strategy, applied = np.asarray(on_strategy), np.asarray(applied)
        assert np.max(np.abs(applied)) > 1e-3, path  # a real step was taken
        np.testing.assert_allclose(on_strategy, on_single, rtol=1e-6, atol=1e-8, err_msg=path)
        # SGD(1.0): the update is minus the all-reduced sum of the two shards' gradients.
        scale = np.max(np.abs(applied))
        np.testing.assert_allclose(on_strategy, applied, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=path)
    assert all(w["identical"] for w in grads["replicas_after_step"].values())


def test_signal_monitor_in_fit_under_the_strategy(run):
    monitor = run["monitor"]
    assert monitor["steps"] == [0, 3, 6, 8]  # 8 steps of 32, a probe every 3, and the last
    assert monitor["same_weights_as_without"]
    assert len(monitor["events"]) == 1  # one process: the chief, which writes
    # Its first probe (fit's first batch, before any step) is diagnose's on one device.
    assert_rows_close(monitor["first_probe"]["activations"], monitor["reference"]["layers"])
    assert_rows_close(monitor["first_probe"]["weights"], monitor["reference"]["weights"])


def test_lsuv_under_the_strategy(run):
    lsuv = run["model_init"]["lsuv"]
    assert lsuv["variances"] == pytest.approx([1.0] * 3, abs=0.1)
    assert lsuv["max_diff"] < 1e-6  # the same weights as on one device, same seed and batch
    assert lsuv["unseeded_warnings"] == []  # one process: no workers to disagree
    assert all(w["identical"] and w["kind"] == "MirroredVariable"
               for w in lsuv["replicas"].values())
    lsuv_init = run["model_init"]["lsuv_init"]
    assert lsuv_init["converged"] == [True] * 3
    assert all(w["identical"] for w in lsuv_init["replicas"].values())


def test_reinitialize_under_the_strategy(run):
    reinit = run["model_init"]["reinitialize"]
    assert reinit["max_diff"] == 0.0  # the same seed draws the same weights
    assert all(w["identical"] and w["copies"] == 2 for w in reinit["replicas"].values())


@pytest.mark.parametrize("keep", ["host", "device"])
def test_restore_under_the_strategy_puts_every_replica_back_alike(run, keep):
    out = run["restore"][keep]
    restore = out["restore"]
    assert restore["reason"].startswith("nonfinite: ") and "NaN" in restore["reason"]
    assert (restore["step"], restore["restored_step"], restore["action"]) == (6, 3, "stopped")
    assert out["equal_to_kept"] and out["finite"]  # on both devices, bit for bit
    assert all(w["identical"] for w in out["replicas"].values())
