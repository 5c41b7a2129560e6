"""MultiWorkerMirroredStrategy, 2 worker processes on 127.0.0.1: SignalMonitor in fit.

Both workers finish; only the chief writes TensorBoard logs; both see the same probes and
end with the same weights; a finding that stops or raises on one worker does so on both,
at the same step, so neither waits forever for the other.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# Two TensorFlow processes and a gRPC cluster: 20 s on an idle 2-core machine, 40 s on a busy one.
pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
# Upper bound for both workers together on a busy 2-core machine (they take 20 to 40 s).
# Past it, both are killed and the test fails: a deadlock never hangs the suite.
TIMEOUT_S = 180


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def output_of(folder, index):
    with open(folder / f"worker{index}.log", errors="replace") as f:
        return f.read()[-4000:]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_worker")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    root = os.path.dirname(os.path.dirname(HERE))
    processes = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            with open(folder / f"worker{index}.log", "w") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, os.path.join(HERE, "multi_worker_script.py"),
                     str(folder / f"out{index}.json"), str(folder / "logs")],
                    env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in processes):
            # One worker failing leaves the other waiting in a collective: stop both.
            if any(p.poll() not in (None, 0) for p in processes) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], "\n".join(
        f"worker {i} exit {code} (negative: killed after {TIMEOUT_S} s or a failure of the "
        f"other):\n{output_of(folder, i)}" for i, code in enumerate(codes))
    results = []
    for index in range(2):
        with open(folder / f"out{index}.json") as f:
            results.append(json.load(f))
    return folder, results


def test_both_workers_finish_and_only_the_chief_is_chief(job):
    _, (chief, other) = job
    assert (chief["task"], other["task"]) == (0, 1)
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["chief"] and not other["chief"]
    for worker in (chief, other):
        assert worker["train"]["iterations"] == 8  # 2 epochs of 128 samples, 32 a step
        assert worker["train"]["monitor_warnings"] == []  # no probe failed


def test_only_the_chief_writes_logs(job):
    folder, (chief, other) = job
    shared = os.listdir(folder / "logs" / "shared")
    assert shared and all("tfevents" in name for name in shared)
    # Event files are named events.out.tfevents.<time>.<host>.<pid>.<n>.v2
    assert {name.split(".")[-3] for name in shared} == {str(chief["pid"])}
    # The chief's pictures (images=True on both): probes 0, 2 and 4 of steps 0, 2, ..., 8.
    events = EventAccumulator(str(folder / "logs" / "shared"),
                              size_guidance={"tensors": 0}).Reload()
    for tag in ("signal/propagation", "signal/activation_rms_heat_map"):
        assert [e.step for e in events.Tensors(tag)] == [0, 4, 8], tag
    for phase in ("stop", "raise"):  # each worker was given a folder of its own there
        assert os.listdir(folder / "logs" / f"{phase}_worker0")
        assert not os.path.exists(folder / "logs" / f"{phase}_worker1")


def test_workers_probe_the_same_and_end_with_the_same_weights(job):
    _, (chief, other) = job
    assert chief["train"]["steps"] == other["train"]["steps"] == [0, 2, 4, 6, 8]
    # The same batch and the same (all-reduced) weights: the same numbers on each worker.
    assert chief["train"]["activations"] == other["train"]["activations"]
    for a, b in zip(chief["train"]["weights"], other["train"]["weights"]):
        np.testing.assert_array_equal(a, b)  # LSUVInit too: the same x and seed on each


def test_unseeded_lsuv_warns_on_every_worker(job):
    _, workers = job
    assert all(worker["train"]["unseeded_lsuv_warned"] for worker in workers)
    assert all(worker["train"]["unseeded_reinitialize_warned"] for worker in workers)


def test_a_finding_on_one_worker_stops_both_at_the_same_step(job):
    _, (chief, other) = job
    assert chief["stop"]["findings"] == []  # its own probe batch is healthy
    assert "saturated" in other["stop"]["findings"]
    # The probe before the first step found it: both stop after that step.
    assert chief["stop"]["iterations"] == other["stop"]["iterations"] == 1
    assert chief["stop"]["steps"] == other["stop"]["steps"] == [0]


def test_a_finding_that_raises_on_one_worker_raises_on_both(job):
    _, (chief, other) = job
    assert other["raise"]["error"]["kind"] in other["raise"]["findings"]  # its own finding
    assert chief["raise"]["error"]["kind"] is None  # none of its own: the other worker's
    assert "another worker" in chief["raise"]["error"]["message"]
    assert chief["raise"]["iterations"] == other["raise"]["iterations"] == 0
