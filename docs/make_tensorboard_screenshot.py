"""Makes docs/tensorboard.png: SignalMonitor's per-layer charts in TensorBoard, for the README.

Trains a deep ReLU MLP on scikit-learn's bundled digits twice (He and Glorot-normal kernels)
with a SignalMonitor each, serves the logs with TensorBoard on a free loopback port, and has
headless Chromium screenshot the scalars dashboard. Nothing leaves 127.0.0.1.

    python docs/make_tensorboard_screenshot.py [--out docs/tensorboard.png]

Needs a `chromium` (or `chromium-browser`, `google-chrome`) on PATH, or `--chromium PATH`.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from sklearn.datasets import load_digits

import keras_initkit  # noqa: F401  (registers the kit_* aliases)
from keras_initkit.callbacks import SignalMonitor

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = ("kit_he", "kit_glorot_normal")  # each run is named after its kernel initializer
DEPTH, WIDTH, EPOCHS, EVERY = 8, 64, 6, 5
# One statistic for every layer: a chart per layer, the depth trend readable at a glance.
TAG_FILTER = r"activation/.*/std"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


def train(log_root):
    digits = load_digits()
    x = ((digits.data - digits.data.mean(0)) / (digits.data.std(0) + 1e-6)).astype("float32")
    y = digits.target.astype("int32")
    for init in RUNS:
        keras.utils.set_random_seed(0)
        # Named layers: Keras' automatic names go on counting across models (dense_9, ...),
        # and the runs' tags would differ instead of sharing one chart per layer.
        model = keras.Sequential(
            [keras.Input((64,))]
            + [keras.layers.Dense(WIDTH, activation="relu", kernel_initializer=init,
                                  name=f"hidden_{i + 1}") for i in range(DEPTH)]
            + [keras.layers.Dense(10, kernel_initializer="kit_glorot", name="logits")],
            name="mlp")
        model.compile(keras.optimizers.SGD(0.02, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        monitor = SignalMonitor(os.path.join(log_root, init), probe_data=(x[:256], y[:256]),
                                every_n_steps=EVERY, on_finding=lambda finding: None)
        history = model.fit(x, y, batch_size=64, epochs=EPOCHS, verbose=0, callbacks=[monitor])
        print(f"{init}: accuracy {history.history['accuracy'][-1]:.3f}, "
              f"{len(monitor.history['step'])} probes")
    return [f"activation/{path}/std" for path in monitor.history["activations"]], \
        monitor.history["step"][-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with _OPENER.open(url, timeout=30) as response:
        return json.loads(response.read().decode())


def wait_for_data(server, base, tag, last_step, timeout=120):
    """Polls the data API until every run's `tag` reaches `last_step` (TensorBoard answers
    before it has read the logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"TensorBoard exited with {server.returncode}")
        try:
            if all(get(f"{base}/data/plugin/scalars/scalars?"
                       + urllib.parse.urlencode({"run": run, "tag": tag}))[-1][1] == last_step
                   for run in RUNS):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, IndexError):
            pass
        time.sleep(0.25)
    sys.exit(f"TensorBoard had not served the logs after {timeout} s")


def screenshot(chromium, url, out, budget_ms):
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state, no sync
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--no-proxy-server", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--hide-scrollbars", "--window-size=1440,1000",  # three charts a row
             f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)


def shrink(path):
    """A palette PNG: the charts have few colours, and the file drops to a fraction."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "tensorboard.png"))
    parser.add_argument("--chromium", default=None, help="the Chromium binary")
    parser.add_argument("--budget-ms", type=int, default=15000,
                        help="Chromium's virtual time for the page to load and draw")
    args = parser.parse_args()
    args.out = os.path.abspath(args.out)
    chromium = args.chromium or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        sys.exit("No Chromium found: install one (Debian: apt-get install chromium) or pass "
                 "--chromium.")
    with tempfile.TemporaryDirectory() as log_root:
        tags, last_step = train(log_root)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # --logdir "." from inside it: the page shows "." as the data location, not a temp path.
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", ".",
             "--host", "127.0.0.1", "--port", str(port), "--load_fast=false",
             "--reload_interval=0"],  # the logs are complete: one load
            cwd=log_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        try:
            wait_for_data(server, base, tags[-1], last_step)
            # The SCALARS dashboard draws SVG charts; TIME SERIES's canvas charts come out
            # blank in headless Chromium without a GPU. The dashboard keeps its state (tag filter,
            # smoothing) in the URL's fragment.
            state = urllib.parse.urlencode({"tagFilter": TAG_FILTER, "_smoothingWeight": 0})
            screenshot(chromium, f"{base}/#scalars&{state}", args.out, args.budget_ms)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    shrink(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KB)")


if __name__ == "__main__":
    main()
