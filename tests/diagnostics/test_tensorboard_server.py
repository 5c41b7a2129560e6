"""SignalMonitor's logs, served by a real TensorBoard: the data API returns the history's values."""
import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest

from keras_initkit.callbacks import SignalMonitor
from keras_initkit.callbacks.signal_monitor import HEAT_MAP_TAG, PROFILE_TAG

L = keras.layers
RUN = "he"  # the monitor logs to <logdir>/he, so TensorBoard names the run "he"
STARTUP_S = 120  # an upper bound only: TensorBoard imports TensorFlow, slow on a busy machine
# No proxy from the environment: every request goes straight to the loopback server.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoard:
    """A running TensorBoard server: its `logdir`, its `base` URL, and a bounded wait."""

    def __init__(self, process, base, logdir, log_file):
        self.process, self.base, self.logdir, self.log_file = process, base, logdir, log_file

    def get(self, path, **query):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with _OPENER.open(url, timeout=30) as response:
            return json.loads(response.read().decode())

    def wait_until(self, ready):
        """Polls `ready(self)` until it is true; fails with the server's log after STARTUP_S."""
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"TensorBoard exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if ready(self):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass  # not listening yet, or not loaded yet (an unknown tag is an HTTP error)
            if time.monotonic() > deadline:
                pytest.fail(f"TensorBoard had not served the logs after {STARTUP_S} s:\n"
                            f"{self.tail()}")
            time.sleep(0.2)

    def tail(self, lines=30):
        with open(self.log_file) as log:
            return "".join(log.readlines()[-lines:])


@pytest.fixture
def tensorboard(tmp_path, subprocess_env):
    """A TensorBoard server on a free loopback port, watching an empty `logdir`, stopped after."""
    logdir = tmp_path / "logs"
    logdir.mkdir()
    port = _free_port()
    log_file = tmp_path / "tensorboard.log"
    with open(log_file, "w") as log:
        # --load_fast=false: the Python loader, no separate Rust data server process.
        # --reload_interval=1: it picks up what training writes within a second.
        process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
             "--host", "127.0.0.1", "--port", str(port), "--load_fast=false",
             "--reload_interval=1"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=subprocess_env)
    try:
        yield TensorBoard(process, f"http://127.0.0.1:{port}", logdir, log_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _model():
    keras.utils.set_random_seed(0)
    # Named layers: automatic names depend on which tests ran before (dense_7, ...).
    block = keras.Sequential([L.Dense(16, kernel_initializer="kit_he", name="dense"),
                              L.BatchNormalization(name="norm"), L.Activation("relu", name="relu")],
                             name="block")
    model = keras.Sequential([keras.Input((8,)), block, L.Dense(2, name="logits")], name="tiny")
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.slow
def test_tensorboard_serves_the_per_layer_signals_of_the_history(tensorboard):
    # The server starts first, as it would in use: its start-up (importing TensorFlow) overlaps
    # the training, and it reads the event file while the monitor writes it.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = _model()
    monitor = SignalMonitor(tensorboard.logdir / RUN, probe_data=(x[:32], y[:32]),
                            every_n_steps=3, histograms=True, images=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    steps = monitor.history["step"]
    assert steps == [0, 3, 6, 9, 12, 15, 16]  # every 3 of the 16 steps, and the last
    layers, weights = monitor.history["activations"], monitor.history["weights"]
    assert "tiny/block/dense" in layers and "tiny/block/dense/kernel" in weights  # nested paths

    def loaded(server):  # the last event written: each probe writes its histograms last
        served = server.get("/data/plugin/histograms/histograms", run=RUN,
                            tag=f"weight/{next(reversed(weights))}")
        return served[-1][1] == steps[-1]

    tensorboard.wait_until(loaded)
    assert tensorboard.get("/data/runs") == [RUN]
    listing = tensorboard.get("/data/plugins_listing")
    assert listing["scalars"]["enabled"] and listing["histograms"]["enabled"]

    tags = tensorboard.get("/data/plugin/scalars/tags")[RUN]
    expected = {f"activation/{path}/{stat}" for path in layers
                for stat in ("mean", "std", "grad_rms", "dead_fraction", "saturated_fraction",
                             "nan_count")}
    expected |= {f"weight/{path}/{stat}" for path in weights
                 for stat in ("weight_norm", "grad_norm", "grad_to_weight", "update_ratio")}
    assert set(tags) == expected

    # Activations of every layer, gradients and weights of every variable: TensorBoard's
    # (step, value) pairs are the history's, to float32 precision.
    checks = [("activation", path, stat, layers[path][stat])
              for path in layers for stat in ("std", "mean", "dead_fraction")]
    checks += [("weight", path, stat, weights[path][stat])
               for path in weights for stat in ("grad_norm", "weight_norm")]
    for kind, path, stat, history in checks:
        tag = f"{kind}/{path}/{stat}"
        served = tensorboard.get("/data/plugin/scalars/scalars", run=RUN, tag=tag)
        assert [step for _, step, _ in served] == steps, tag
        values = [value for _, _, value in served]
        assert all(math.isfinite(v) for v in values), tag
        np.testing.assert_allclose(values, history, rtol=1e-6, atol=1e-7, err_msg=tag)

    histogram_tags = set(tensorboard.get("/data/plugin/histograms/tags")[RUN])
    assert histogram_tags == ({f"activation/{path}" for path in layers}
                              | {f"{kind}/{path}" for path in weights
                                 for kind in ("gradient", "weight")})
    # A histogram counts every entry: a kernel's gradient has one count per weight.
    kernel = model.get_layer("block").get_layer("dense").kernel
    served = tensorboard.get("/data/plugin/histograms/histograms", run=RUN,
                             tag=f"gradient/{kernel.path}")
    assert [step for _, step, _ in served] == steps
    assert all(sum(count for _, _, count in buckets) == np.prod(kernel.shape)
               for _, _, buckets in served)

    # The Images tab: both pictures, at the first probe and at the last (the default
    # interval of 50 probes is not reached), served as PNG.
    def pictured(server):  # the last picture comes after the last probe's histograms
        served = server.get("/data/plugin/images/images", run=RUN, tag=HEAT_MAP_TAG)
        return [image["step"] for image in served] == [0, steps[-1]]

    tensorboard.wait_until(pictured)
    pictures = tensorboard.get("/data/plugin/images/tags")[RUN]
    assert set(pictures) == {PROFILE_TAG, HEAT_MAP_TAG}
    assert "log10" in pictures[HEAT_MAP_TAG]["description"]
    for tag in pictures:
        served = tensorboard.get("/data/plugin/images/images", run=RUN, tag=tag)
        assert [image["step"] for image in served] == [0, steps[-1]], tag
        url = f"{tensorboard.base}/data/plugin/images/individualImage?{served[-1]['query']}"
        with _OPENER.open(url, timeout=30) as response:
            assert response.read().startswith(b"\x89PNG\r\n"), tag
