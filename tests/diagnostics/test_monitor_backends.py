"""SignalMonitor on JAX and PyTorch, one process per backend (`monitor_backend_script.py`):
the first training batch is the probe batch and training is unchanged, and a diverging run
is restored to its last healthy probe, bit for bit."""
import json
import subprocess
import sys

import monitor_backend_script as script
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_first_batch_and_restore_on_jax_and_torch(subprocess_env, tmp_path, backend):
    done = subprocess.run([sys.executable, script.__file__, str(tmp_path)],
                          env=dict(subprocess_env, KERAS_BACKEND=backend),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # The probe batch is the batch training takes first (x[:16] unshuffled, rows of x when
    # shuffled), training is unchanged bit for bit, and the probe of step 0 saw the weights
    # training starts from (JAX's fit had taken them out of the variables).
    for shuffle, seen in out["first_batch"].items():
        assert seen["same_weights"] and seen["rows_of_x"] and seen["step0_norms"], shuffle
        assert seen["steps"] == [0, 2, 4, 6], shuffle
    assert out["first_batch"]["False"]["head"] and not out["first_batch"]["True"]["head"]
    assert out["restore"] == {"action": "stopped", "equal": True}
