"""The diagnostics on JAX and PyTorch: the probe's statistics equal TensorFlow's for the same
weights and batch to 1e-5 relative (float32), `diagnose` finds the same, a SignalMonitor fit
(after LSUVInit) writes the same TensorBoard tags at the same steps, `lsuv` scales to the same
weights and `reinitialize` draws He variances."""
import json
import subprocess
import sys

import backend_probe_script as script
import numpy as np
import pytest

RTOL = 1e-5
# Fields on the scale of the row's own values; the others are judged on the largest value of
# that field in the model (a gradient that is zero in exact arithmetic, such as a bias before
# BatchNormalization, is rounding noise on every backend).
ON_THE_ROW_SCALE = ("mean", "std", "rms", "min", "max")


def differences(reference, other):
    """The statistics of `other` that differ from `reference` by more than RTOL of their
    value plus RTOL of their scale."""
    found = []
    assert reference.keys() == other.keys()
    for case, expected in reference.items():
        rows, got = expected["rows"], other[case]["rows"]
        assert [path for path, _ in rows] == [path for path, _ in got], case
        largest = {}
        for _, row in rows:
            for field, value in row.items():
                largest[field] = max(largest.get(field, 0.0), abs(value or 0.0))
        for (path, a), (_, b) in zip(rows, got):
            for field, value in a.items():
                if value is None or b[field] is None:
                    if value != b[field]:
                        found.append((case, path, field, value, b[field]))
                    continue
                scale = abs(a.get("rms") or 0.0) if field in ON_THE_ROW_SCALE else largest[field]
                if abs(value - b[field]) > RTOL * (abs(value) + scale):
                    found.append((case, path, field, value, b[field]))
        if abs(expected["loss"] - other[case]["loss"]) > RTOL * abs(expected["loss"]):
            found.append((case, "loss", expected["loss"], other[case]["loss"]))
    return found


@pytest.mark.slow
def test_the_diagnostics_agree_on_tensorflow_jax_and_torch(subprocess_env, tmp_path):
    weights = str(tmp_path / "weights.npz")
    reference = script.statistics(weights, save=True)  # TensorFlow, in this process
    diagnosis = json.loads(json.dumps(script.diagnosis()))
    assert diagnosis[1] and "vanishing" in {kind for kind, _ in diagnosis[0]}  # the control
    initialized = json.loads(json.dumps(script.initialized(weights)))
    events = json.loads(json.dumps(script.monitored_fit(weights, str(tmp_path / "tensorflow"))))
    assert {"scalars", "histograms", "images", "text"} <= {p for p, _ in events.values()}
    runs = {backend: subprocess.Popen(
        [sys.executable, script.__file__, weights, str(tmp_path / f"{backend}.json"),
         str(tmp_path / backend)],
        env=dict(subprocess_env, KERAS_BACKEND=backend), stderr=subprocess.PIPE, text=True)
        for backend in ("jax", "torch")}
    for backend, run in runs.items():
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, (backend, stderr[-3000:])
        with open(tmp_path / f"{backend}.json") as f:
            other = json.load(f)
        assert differences(reference, other["statistics"]) == [], backend
        assert "in_graph_hook" in other["refusal"] and backend in other["refusal"]
        assert other["diagnosis"] == diagnosis, backend
        # The monitor writes the same tags, with the same plugins, at the same steps.
        assert other["events"] == events, backend
        assert other["command_line"] == [1, True], backend  # vanishing: an error, exit 1
        scaled, ratios = other["initialized"]
        np.testing.assert_allclose(np.concatenate([np.ravel(w) for w in scaled]),
                                   np.concatenate([np.ravel(w) for w in initialized[0]]),
                                   rtol=RTOL, atol=RTOL)
        for ratio, size in ratios + initialized[1]:  # 5 standard errors of a sample variance
            assert abs(ratio - 1) < 5 * (2 / size) ** 0.5, (backend, ratio, size)
    # The comparison can fail: a weight changed by one part in 1e4 is seen.
    moved = json.loads(json.dumps(reference))
    moved["mlp/True"]["rows"][0][1]["std"] *= 1 + 1e-4
    assert [d[:3] for d in differences(reference, moved)] == [("mlp/True", "mlp/relu", "std")]
