"""`compare` over seeds, depths and architectures: parallel cells, progress, report.html."""
import base64
import html.parser
import io
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from keras_initkit.experiment import compare
from keras_initkit.experiment.progress import Progress

TINY = dict(epochs=2, width=16, batch_size=128, verbose=0)


def results(out):
    with open(os.path.join(out, "results.json")) as file:
        return json.load(file)


@pytest.mark.slow
def test_worker_processes_give_the_table_of_one_process(tmp_path):
    tables = {}
    for jobs in (1, 2):  # this process and one worker, for four cells
        compare(["zeros", "he"], depths=[3], seeds=2, jobs=jobs, out=str(tmp_path / str(jobs)),
                **TINY)
        tables[jobs] = results(tmp_path / str(jobs))
    one, two = tables[1], tables[2]
    assert two["settings"]["jobs"] == 2 and one["settings"]["jobs"] == 1
    without_time = [[{k: v for k, v in r.items() if k != "seconds"} for r in t["rows"]]
                    for t in (one, two)]
    assert without_time[0] == without_time[1]  # every mean, interval and p-value
    assert one["histories"] == two["histories"] and one["bands"] == two["bands"]
    # Every run, every epoch, bit for bit, in the order of the cells.
    assert [(r["scheme"], r["seed"], r["history"]) for r in one["runs"]] == \
        [(r["scheme"], r["seed"], r["history"]) for r in two["runs"]]
    assert [(r["scheme"], r["seed"]) for r in two["runs"]] == [
        ("zeros", 0), ("zeros", 1), ("he", 0), ("he", 1)]
    # Each worker wrote its cell's TensorBoard logs.
    for seed in (0, 1):
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(
            tmp_path / "2" / "logs" / "he" / f"seed_{seed}"))


def test_a_depth_sweep_marks_the_diagnosis_in_each_cell_and_writes_every_figure(tmp_path):
    out = str(tmp_path / "sweep")
    result = compare(["random_normal", "he"], depths=[2, 4], seeds=1, jobs=1, out=out, **TINY)
    assert result.depths == [2, 4]
    assert [(r["scheme"], r["depth"]) for r in result.rows] == [
        ("random_normal", 2), ("he", 2), ("random_normal", 4), ("he", 4)]
    assert set(result.diagnoses) == {"random_normal/depth_2", "he/depth_2",
                                     "random_normal/depth_4", "he/depth_4"}
    # Keras' RandomNormal(0.05) shrinks the signal under ReLU; He keeps it.
    assert result.row("he", 4)["at_init"] == "healthy"
    assert "vanishing" in result.row("random_normal", 4)["at_init"]
    for name in ("depth_sweep", "learning_curves_depth_2", "learning_curves_depth_4",
                 "signal_at_init_depth_2", "signal_at_init_depth_4", "report"):
        assert os.path.getsize(result.files[name]) > 0, name
    assert "--depths 2,4" in result.command() and "--depth " not in result.command()
    # compare turns the monitor's pictures on: each run's logs hold them.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(out, "logs", "he", "depth_4"),
                              size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = set(events.Tags()["images"]) | set(events.Tags()["tensors"])
    assert {"signal/propagation", "signal/activation_rms_heat_map"} <= tags, tags
    table = result.table()
    assert table.splitlines()[0].split()[:2] == ["scheme", "depth"]


def test_the_cnn_trains_on_the_digits_as_images(tmp_path):
    result = compare(["he"], arch="cnn", depth=2, seeds=1, jobs=1, out=str(tmp_path / "c"),
                     **TINY)
    assert result.settings["model"] == "cnn(2x16, relu)"
    row = result.rows[0]
    assert row["at_init"] == "healthy" and 0.1 < row["val_accuracy"] <= 1, row  # above chance
    layers = [r["type"] for r in result.diagnoses["he"].layers]
    assert layers.count("Conv2D") == 2 and "GlobalAveragePooling2D" in layers


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A two-depth comparison and its report.html."""
    out = str(tmp_path_factory.mktemp("report"))
    result = compare(["zeros", "he"], depths=[2, 3], seeds=1, jobs=1, out=out, **TINY)
    with open(result.files["report"], encoding="utf-8") as file:
        return result, file.read()


def test_the_report_is_one_file_with_every_part(report):
    from PIL import Image

    result, text = report
    parser = _Images()
    parser.feed(text)
    assert parser.external == []  # nothing to fetch: it opens offline
    # The sweep, curves and signal per depth, and each scheme's picture at each depth.
    assert len(parser.sources) == 1 + 2 * 2 + 4
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            image.load()
            assert image.width > 100 and image.height > 100
    assert result.command().replace("'", "&#x27;") in text
    for part in ("Depth sweep", "Learning curves", "Diagnosis at initialization", "Settings",
                 "he/depth_3", "zeros/depth_2", "vanishing"):
        assert part in text, part


def _chromium():
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on PATH (Debian: apt-get install "
                                                "chromium)")
def test_the_report_renders_every_figure_in_headless_chromium(report, tmp_path):
    # A copy of the report with a script that lists, after load, each image's decoded size;
    # Chromium prints the resulting DOM. The report itself carries no script.
    _, text = report
    page = tmp_path / "report.html"
    page.write_text(text.replace("</body>", "<script>window.addEventListener('load', () => {"
                                 "document.body.setAttribute('data-sizes', Array.from("
                                 "document.images).map(i => i.complete ? i.naturalWidth + 'x'"
                                 " + i.naturalHeight : 'pending').join(' '));});</script></body>"),
                    encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
             page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    sizes = dom.split('data-sizes="', 1)[1].split('"', 1)[0].split()
    assert len(sizes) == 9, sizes
    for size in sizes:
        width, height = map(int, size.split("x"))  # "pending" or "0x0" fails here
        assert width > 100 and height > 100, sizes


def test_progress_lines_estimate_the_time_left_from_the_epochs_done():
    stream = io.StringIO()
    progress = Progress(total=4, epochs=10, stream=stream)  # StringIO is no terminal: lines
    progress.start -= 30  # 30 s ago
    progress.epoch("a", 5)
    progress.epoch("b", 5)
    # 10 of 40 epochs in 30 s: 90 s left.
    assert progress.time_left() == pytest.approx(90, abs=1)
    progress.done("a", "val_accuracy 0.9")
    progress.epoch("a", 10)  # a late report from a worker changes nothing
    assert progress.running == {"b": 5}
    # 15 of 40 epochs in 30 s: 50 s left.
    assert stream.getvalue() == "[1/4] a: val_accuracy 0.9; 0:50 left\n"


def test_progress_bar_redraws_one_line_and_quiet_writes_nothing():
    stream = io.StringIO()
    bar = Progress(total=2, epochs=4, stream=stream, mode="bar")
    bar.epoch("he, seed 0", 1)
    bar.epoch("he, seed 0", 2)
    bar.done("he, seed 0")
    bar.close()
    weighted = Progress(total=2, epochs=1, stream=io.StringIO(), costs={"deep": 3, "shallow": 1})
    weighted.start -= 10
    weighted.done("shallow")  # a quarter of the work in 10 s: 30 s left
    assert weighted.time_left() == pytest.approx(30, abs=1)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "he, seed 0 epoch 2/4" in text and "1/2 cells" in text
    assert "[============            ]" in text.split("\r")[3]  # 4 of 8 epochs
    quiet = io.StringIO()
    silent = Progress(total=2, epochs=4, stream=quiet, mode="quiet")
    silent.epoch("x", 1)
    silent.done("x")
    silent.close()
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="`mode` must be one of"):
        Progress(1, 1, mode="fancy")


def test_default_jobs_stay_within_cores_cells_and_memory(monkeypatch):
    from keras_initkit.experiment import parallel

    monkeypatch.setattr(parallel, "cores", lambda: 8)
    monkeypatch.setattr(parallel, "available_memory", lambda: 5 * 1024 ** 3)
    assert parallel.default_jobs(27) == 2  # 5 GiB at 2 GiB a worker
    monkeypatch.setattr(parallel, "available_memory", lambda: None)
    assert parallel.default_jobs(27) == 8 and parallel.default_jobs(3) == 3
    monkeypatch.setattr(parallel, "available_memory", lambda: 10 ** 6)
    assert parallel.default_jobs(27) == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`jobs` must be an integer >= 1"):
            parallel.check_jobs(bad)
    assert np.isscalar(parallel.cores()) and parallel.cores() >= 1


def test_a_scheme_that_diverged_in_one_seed_has_no_mean_and_is_never_best():
    from keras_initkit.experiment.comparison import _cell, _judge_against_best, _summary, _with_ci

    def run(scheme, loss, accuracy=None):
        return {"scheme": scheme, "depth": 3, "at_init": "healthy", "train_loss": loss,
                "train_accuracy": accuracy, "val_loss": loss, "val_loss_ci": None,
                "val_accuracy": accuracy, "val_accuracy_ci": None, "target_epoch": None,
                "vs_best": None, "seeds": 1, "seconds": 1.0}
    finals = {"steady": [2.0, 2.1, 1.9], "diverges": [1.0, None, 3.0], "other": [2.5, 2.6, 2.4]}
    rows = [_summary(name, [run(name, v) for v in values]) for name, values in finals.items()]
    steady, diverges, other = rows
    assert diverges["val_loss"] is None and diverges["val_loss_ci"] is None
    assert steady["val_loss"] == pytest.approx(2.0)
    _judge_against_best(rows, finals, "val_loss", {"steady": 0, "diverges": 1, "other": 0})
    assert steady["vs_best"] == "best" and diverges["vs_best"] == "diverged in 1 of 3 seeds"
    assert other["vs_best"].startswith(("worse", "indistinguishable"))
    # Classification: a NaN loss leaves a finite (chance) accuracy, which must not win.
    runs = {"steady": [run("steady", 0.3, 0.90), run("steady", 0.3, 0.91)],
            "diverges": [run("diverges", 0.2, 0.97), run("diverges", None, 0.10)]}
    rows = [_summary(name, group) for name, group in runs.items()]
    assert rows[1]["val_accuracy"] is None
    _judge_against_best(rows, {name: [r["val_accuracy"] for r in group]
                               for name, group in runs.items()}, "val_accuracy",
                        {"steady": 0, "diverges": 1})
    assert [r["vs_best"] for r in rows] == ["best", "diverged in 1 of 2 seeds"]
    # A number as wide as its column stays apart from the cell before it.
    assert (_cell(None, 11) + _with_ci(2.493e11, 1.9e8, 19)).split() == [
        "nan", "2.493e+11", "±", "1.9e+08"]
