"""The initializers use only keras.ops and keras.random, so they run on Keras' numpy backend.

Keras 3.15's numpy backend imports its jax backend's FFT at import time, so jax must be
installed (the [dev] extra has it); no jax code runs.
"""
import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, math, sys
import numpy as np
import keras
assert keras.backend.backend() == "numpy"
import keras_initkit
from keras_initkit import initializers as I

np.savez(sys.argv[1], w=np.arange(12, dtype="float32").reshape(3, 4))
schemes = {
    "Zeros": I.Zeros(), "Ones": I.Ones(), "Constant": I.Constant(0.5),
    "RandomNormal": I.RandomNormal(stddev=0.1, seed=1), "RandomUniform": I.RandomUniform(seed=1),
    "TruncatedNormal": I.TruncatedNormal(stddev=0.1, seed=1),
    "VarianceScaling": I.VarianceScaling(activation="relu", distribution="normal", seed=1),
    "GlorotUniform": I.GlorotUniform(seed=1), "GlorotNormal": I.GlorotNormal(seed=1),
    "HeNormal": I.HeNormal(seed=1), "HeUniform": I.HeUniform(seed=1),
    "LecunNormal": I.LecunNormal(seed=1), "LecunUniform": I.LecunUniform(seed=1),
    "Orthogonal": I.Orthogonal(seed=1), "Identity": I.Identity(), "Sparse": I.Sparse(seed=1),
    "DeltaOrthogonal": I.DeltaOrthogonal(seed=1), "ConvolutionAware": I.ConvolutionAware(seed=1),
    "ICNR": I.ICNR(scale=2),
}
report = {}
for name, init in schemes.items():
    x = keras.ops.convert_to_numpy(init((3, 3, 32, 64)))
    report[name] = {"shape": list(x.shape), "var": float(x.var()), "mean": float(x.mean()),
                    "type": type(x).__name__}
x = keras.ops.convert_to_numpy(I.Orthogonal(seed=2)((96, 64)))
report["orth_error"] = float(np.abs(x.T @ x - np.eye(64)).max())
x = keras.ops.convert_to_numpy(I.Orthogonal(seed=2)((1024, 256)))  # the CholeskyQR2 path
report["orth_cholesky_error"] = float(np.abs(x.T @ x - np.eye(256)).max())
report["pretrained"] = keras.ops.convert_to_numpy(I.Pretrained(sys.argv[1], "w")((3, 4))).tolist()
layer = keras.layers.Dense(8, kernel_initializer="kit_he")
layer.build((None, 16))
report["dense_kernel_var"] = float(np.var(keras.ops.convert_to_numpy(layer.kernel)))
try:  # the recipes trace a call, which the numpy backend cannot show: refused by name
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    keras_initkit.reinitialize(tiny, "fixup")
except ValueError as error:
    report["recipe_refusal"] = str(error)
print(json.dumps(report))
"""


@pytest.mark.slow
def test_every_scheme_runs_on_the_numpy_backend(subprocess_env, tmp_path):
    env = dict(subprocess_env, KERAS_BACKEND="numpy")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "w.npz")], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    fan_in, fan_out = 9 * 32, 9 * 64
    n = 3 * 3 * 32 * 64
    expected = {"HeNormal": 2 / fan_in, "HeUniform": 2 / fan_in, "LecunNormal": 1 / fan_in,
                "LecunUniform": 1 / fan_in, "GlorotNormal": 2 / (fan_in + fan_out),
                "GlorotUniform": 2 / (fan_in + fan_out), "VarianceScaling": 2 / fan_in,
                "TruncatedNormal": 0.01, "RandomNormal": 0.01, "ConvolutionAware": 2 / fan_in}
    for name, variance in expected.items():
        # 5 standard errors of a sample variance, sqrt(2 / n) relative for a normal law.
        assert abs(report[name]["var"] / variance - 1) < 5 * (2 / n) ** 0.5, (name, report[name])
    for name, entry in report.items():
        if isinstance(entry, dict):
            assert entry["shape"] == [3, 3, 32, 64] and entry["type"] == "ndarray", name
    assert report["Ones"]["mean"] == 1.0 and report["Constant"]["mean"] == 0.5
    assert report["orth_error"] < 1e-5 and report["orth_cholesky_error"] < 1e-5
    assert report["pretrained"] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert abs(report["dense_kernel_var"] * 16 / 2 - 1) < 0.6  # 128 draws: a loose sanity bound
    assert "'numpy' backend" in report["recipe_refusal"], report.get("recipe_refusal")
    assert "KERAS_BACKEND=tensorflow, jax or torch" in report["recipe_refusal"]
