"""Every example runs, and says what it claims."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart(subprocess_env):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "quickstart.py")],
                          capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]]
            for line in done.stdout.splitlines() if line.startswith("kit_")}
    assert set(rows) == {"kit_random_normal", "kit_glorot_normal", "kit_he", "kit_orthogonal"}
    # He keeps the ReLU signal level over 20 layers; N(0, 0.05^2) lets it vanish.
    assert rows["kit_he"][2] > 0.3 * rows["kit_he"][0]
    assert rows["kit_random_normal"][2] < 1e-6
    assert rows["kit_he"][3] > rows["kit_random_normal"][3]  # and it trains further
    assert "weights identical: True" in done.stdout


def test_readme_gives_the_two_commands_that_ci_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    commands = re.findall(r"^pip install .*# (the main job|the test suite)$", readme, re.M)
    assert sorted(commands) == ["the main job", "the test suite"]
    assert 'readme_command "the test suite"' in ci and 'readme_command "the main job"' in ci
