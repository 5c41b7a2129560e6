"""Every example runs, and says what it claims.

Each script in examples/ runs in a fresh Python process with its small settings,
with the working directory set to a temporary folder and `--out out`, so nothing
lands in the repository; the test checks the return code, a key line of the
output, the files the example promises, and that it wrote nothing outside --out.

The selected examples start together, two at a time: much of each run is
single-threaded (imports, tracing), so on 2 cores two runs side by side take
little longer than one.
"""
import concurrent.futures
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_DIR = os.path.join(ROOT, "examples")

# Script -> extra arguments. Every example takes --quick (small settings) and --out DIR
# (everything it writes).
EXAMPLES = {
    "quickstart.py": ["--quick", "--out", "out"],
    "diagnose_saved_model.py": ["--quick", "--out", "out"],
    "lsuv_resnet.py": ["--quick", "--out", "out"],
    "transfer_learning.py": ["--quick", "--out", "out"],
    "custom_initializer.py": ["--quick", "--out", "out"],
    "compare_initializers.py": ["--quick", "--out", "out"],
    "guard_a_diverging_run.py": ["--quick", "--out", "out"],
}
# A line each example prints only when its own checks passed (None: return code only).
KEY_LINES = {
    "quickstart.py": r"^Saved and reloaded a kit_he model: .*weights identical: True$",
    "diagnose_saved_model.py": r"^Healthy after reinitialize: True$",
    "lsuv_resnet.py": r"^diagnose\(\) after LSUV: healthy;",
    "transfer_learning.py": r"^Body layers hidden_1, hidden_2 identical to the source;",
    "custom_initializer.py": r"^Reloaded: weights identical: True;",
    "compare_initializers.py": r"^best mean validation accuracy: ",
    "guard_a_diverging_run.py": r"^Guarded run: finite weights: True, ",
}
# Files each example writes under --out.
OUTPUTS = {
    "quickstart.py": ["logs/kit_he"],
    "diagnose_saved_model.py": ["diagnosis_before.png", "diagnosis_after.png"],
    "lsuv_resnet.py": ["lsuv_report.json", "diagnosis_before.png", "diagnosis_after.png"],
    "transfer_learning.py": ["digits_source.keras"],
    "custom_initializer.py": ["custom_init.keras"],
    "guard_a_diverging_run.py": ["guard.png"],
}
FAST = {"custom_initializer.py"}  # a few seconds; the others train or trace a large model


def check_quickstart(stdout):
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]]
            for line in stdout.splitlines() if line.startswith("kit_")}
    assert set(rows) == {"kit_random_normal", "kit_glorot_normal", "kit_he", "kit_orthogonal"}
    # He keeps the ReLU signal level over 20 layers; N(0, 0.05^2) lets it vanish.
    assert rows["kit_he"][2] > 0.3 * rows["kit_he"][0]
    assert rows["kit_random_normal"][2] < 1e-6
    assert rows["kit_he"][3] > rows["kit_random_normal"][3]  # and it trains further
    assert rows["kit_random_normal"][5] > rows["kit_he"][5]  # the monitor saw more findings


def check_guard(stdout):
    # Without the guard the weights are lost; with it they are kept, and the run that goes on
    # at a lower rate learns.
    assert "(the run is lost): " in stdout and "weights finite: False" in stdout
    assert stdout.count("weights finite: True") == 2  # the two guarded runs
    start, end = map(float, re.search(r"loss ([\d.]+) at the start, ([\d.]+) over", stdout)
                     .groups())
    assert end < 0.5 * start


EXTRA_CHECKS = {"quickstart.py": check_quickstart, "guard_a_diverging_run.py": check_guard}


def _param(script):
    return pytest.param(script, id=script[:-3],
                        marks=() if script in FAST else pytest.mark.slow)


def _run(script, cwd):
    env = dict(os.environ)  # as conftest's subprocess_env: this checkout, TensorFlow quiet
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES_DIR, script),
                           *EXAMPLES[script]], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)
    return done, time.perf_counter() - start


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """script -> future of (CompletedProcess, seconds, cwd), for the selected examples that
    exist, started in the order the tests run."""
    selected = [item.callspec.params["script"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_example_runs"]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = {}
    for script in selected:
        if os.path.exists(os.path.join(EXAMPLES_DIR, script)) and script not in futures:
            cwd = tmp_path_factory.mktemp(script[:-3])
            futures[script] = (pool.submit(_run, script, cwd), cwd)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("script", [_param(s) for s in EXAMPLES])
def test_example_runs(script, runs):
    if script not in runs:
        pytest.skip(f"examples/{script} does not exist yet")
    future, tmp_path = runs[script]
    done, seconds = future.result()
    print(f"{script} {' '.join(EXAMPLES[script])}: {seconds:.1f} s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    if KEY_LINES[script] is not None:
        assert re.search(KEY_LINES[script], done.stdout, re.M), done.stdout[-3000:]
    EXTRA_CHECKS.get(script, lambda stdout: None)(done.stdout)
    for name in OUTPUTS.get(script, []):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    stray = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
             if p.is_file() and "out" not in p.relative_to(tmp_path).parts[:1]]
    assert not stray, f"{script} wrote outside --out: {stray}"


def test_every_example_is_tested():
    scripts = {name for name in os.listdir(EXAMPLES_DIR) if name.endswith(".py")}
    assert scripts <= set(EXAMPLES), f"add {sorted(scripts - set(EXAMPLES))} to EXAMPLES"


def test_readme_gives_the_three_commands_that_ci_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    names = {"the lint": "lint", "the main job": "main", "the test suite": "test"}
    commands = re.findall(r"^pip install .*# (the main job|the test suite|the lint)$", readme, re.M)
    assert sorted(commands) == sorted(names)
    for name, variable in names.items():
        assert f'{variable}_command=$(readme_command "{name}")' in ci
        assert f'eval "${variable}_command"' in ci
