"""`initkit list | compare | diagnose`: the tables, the files, the exit codes, one-line errors."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_initkit
from keras_initkit.cli import main

L = keras.layers
TINY = ["--epochs", "2", "--depth", "3", "--width", "16", "--batch-size", "128", "--quiet",
        "--seeds", "1", "--jobs", "1"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_every_alias_with_its_class_and_formula(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    for info in keras_initkit.list_initializers():
        line = next(out for out in lines if out.split()[0] == info.alias)
        assert info.cls.__name__ in line and info.formula in line


def test_python_dash_m_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "keras_initkit", "list"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0 and "kit_he" in result.stdout, result.stderr


@pytest.mark.slow
def test_compare_writes_the_table_figures_and_logs_and_repeats_exactly(capsys, tmp_path):
    tables = []
    for out in ("a", "b"):
        code, printed, _ = run(capsys, "compare", "--schemes", "zeros,he", "--out",
                               str(tmp_path / out), *TINY)
        assert code == 0
        assert "tensorboard --logdir" not in printed  # --quiet: the table alone
        tables.append(json.loads((tmp_path / out / "results.json").read_text()))
    rows = tables[0]["rows"]
    assert [r["scheme"] for r in rows] == ["zeros", "he"]
    zeros, he = rows
    assert zeros["at_init"] != "healthy" and "dead" in zeros["at_init"]
    assert he["at_init"] == "healthy"
    assert he["train_loss"] < zeros["train_loss"]  # zeros cannot break symmetry
    assert len(tables[0]["histories"]["he"]["loss"]) == 2
    # The same seed gives the same table, timings aside.
    strip = lambda t: [{k: v for k, v in r.items() if k != "seconds"} for r in t["rows"]]  # noqa
    assert strip(tables[0]) == strip(tables[1])
    assert tables[0]["histories"] == tables[1]["histories"]
    out = tmp_path / "a"
    assert (out / "results.csv").read_text().splitlines()[0].startswith("scheme,depth,at_init")
    for png in ("learning_curves.png", "signal_at_init.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert f"wrote {out / 'report.html'}" not in printed  # --quiet prints the table alone
    for scheme in ("zeros", "he"):
        assert any(name.startswith("events.out.tfevents")
                   for name in os.listdir(out / "logs" / scheme))


def saved(tmp_path, init="kit_he", depth=12, name="model.keras"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,))]
                             + [L.Dense(64, activation="relu", kernel_initializer=init)
                                for _ in range(depth)] + [L.Dense(10)])
    path = tmp_path / name
    model.save(path)
    return path


def test_compare_reinitializes_a_saved_model_on_npz_data(capsys, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=rng.normal(size=(200, 64)).astype("float32"),
             y_train=rng.integers(0, 10, 200))
    code, _, err = run(capsys, "compare", "--model", str(saved(tmp_path, depth=2)), "--data",
                       str(data), "--schemes", "kit_glorot", "--out", str(tmp_path / "o"),
                       "--epochs", "1", "--quiet")
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "results.json").read_text())
    assert result["settings"]["train_samples"] == 160 and result["settings"]["val_samples"] == 40


def test_diagnose_exits_nonzero_on_an_unhealthy_model_and_zero_on_a_healthy_one(capsys,
                                                                               tmp_path):
    bad = saved(tmp_path, keras.initializers.RandomNormal(stddev=0.01), name="bad.keras")
    code, out, _ = run(capsys, "diagnose", str(bad), "--out", str(tmp_path / "d"))
    assert code == 1 and "vanishing" in out
    assert (tmp_path / "d" / "diagnosis.png").stat().st_size > 0
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(100, 64)).astype("float32"), y=rng.integers(0, 10, 100))
    code, out, _ = run(capsys, "diagnose", str(saved(tmp_path)), "--data", str(data),
                       "--out", str(tmp_path / "d"))
    assert code == 0 and "healthy" in out


def test_diagnose_passes_warnings_unless_strict(capsys, tmp_path):
    # Glorot under 20 ReLU layers shrinks the signal past 1e-2 of the input's: it trains,
    # slower (a warning), so the gate passes; --strict fails it.
    keras.utils.set_random_seed(0)
    path = tmp_path / "glorot.keras"
    keras.Sequential([keras.Input((64,))] + [
        L.Dense(64, activation="relu", kernel_initializer="glorot_normal") for _ in range(20)]
        + [L.Dense(10)]).save(path)
    code, out, _ = run(capsys, "diagnose", str(path), "--out", str(tmp_path / "d"))
    assert code == 0 and "warning" in out and "vanishing" in out
    code, _, _ = run(capsys, "diagnose", str(path), "--strict", "--out", str(tmp_path / "d"))
    assert code == 1


@pytest.mark.slow
def test_diagnose_passes_a_saved_stock_resnet50_without_data(capsys, tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "resnet50.keras"
    keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3)).save(path)
    code, out, _ = run(capsys, "diagnose", str(path), "--out", str(tmp_path / "d"))
    assert code == 0 and "error" not in out.split("\nhealthy")[-1], out[-2000:]


def bad_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    no_arrays = tmp_path / "no_arrays.npz"
    np.savez(no_arrays, features=np.zeros((4, 64)))
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, x_train=np.zeros((20, 5), "float32"), y_train=np.zeros(20, "int64"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    model = str(saved(tmp_path, depth=1))
    val_shape = tmp_path / "val_shape.npz"
    np.savez(val_shape, x_train=np.zeros((20, 64), "float32"), y_train=np.zeros(20, "int64"),
             x_val=np.zeros((10, 5), "float32"), y_val=np.zeros(10, "int64"))
    negative = tmp_path / "negative.npz"
    np.savez(negative, x_train=np.zeros((20, 64), "float32"), y_train=np.arange(20) - 1)
    fractions = tmp_path / "fractions.npz"
    np.savez(fractions, x_train=np.full((4, 16), 0.5, "float32"))
    tokens = keras.Input((16,), dtype="int32")
    token_model = tmp_path / "tokens.keras"
    keras.Model(tokens, L.Dense(5)(L.GlobalAveragePooling1D()(L.Embedding(100, 8)(tokens)))
                ).save(token_model)
    return {
        "missing model": (["diagnose", str(tmp_path / "nope.keras")], "does not exist"),
        "corrupt model": (["compare", "--model", str(corrupt)], "Cannot load the model"),
        "npz without arrays": (["compare", "--data", str(no_arrays)], "lacks x_train and y_train"),
        "shape does not fit": (["compare", "--model", model, "--data", str(wrong_shape)],
                               "shape (5,) but the model takes (64,)"),
        "diagnose shape": (["diagnose", model, "--data", str(wrong_shape)],
                           "shape (5,) but the model takes (64,)"),
        "unknown scheme": (["compare", "--schemes", "he,hee_normal"], "'he_normal'"),
        "unwritable out": (["compare", "--schemes", "he", "--out", str(blocker / "sub")],
                           "Cannot write to the output folder"),
        "depths with a model": (["compare", "--model", model, "--depths", "2,3"],
                                "does not apply to a saved `model`"),
        "depths not integers": (["compare", "--depths", "5,ten"],
                                "--depths takes comma-separated integers"),
        "repeated depth": (["compare", "--depths", "5,5"], "must be distinct integers"),
        "zero jobs": (["compare", "--jobs", "0"], "`jobs` must be an integer >= 1 or None"),
        "cnn on vectors": (["compare", "--arch", "cnn", "--data", str(wrong_shape)],
                           "takes images of shape (height, width, channels)"),
        "negative learning rate": (["compare", "--learning-rate", "-1"],
                                   "`learning_rate` must be > 0; received "
                                   "learning_rate=-1.0"),
        "nan learning rate": (["compare", "--learning-rate", "nan"], "learning_rate=nan"),
        "target accuracy above 1": (["compare", "--target-accuracy", "2"],
                                    "`target_accuracy` must be a number in [0, 1]"),
        "negative seed": (["compare", "--seed", "-1"], "received seed=-1"),
        "one scheme twice": (["compare", "--schemes", "he,kit_he"], "names a scheme twice"),
        "validation shape": (["compare", "--model", model, "--data", str(val_shape)],
                             "x_val: The data's samples have shape (5,)"),
        "negative labels": (["compare", "--data", str(negative)],
                            "y_train holds int64 labels down to -1"),
        "token model without data": (["diagnose", str(token_model)],
                                     "takes integer inputs (int32: token ids"),
        "fractions for a token model": (["diagnose", str(token_model), "--data",
                                         str(fractions)], "holds float32 values from 0.5"),
    }


@pytest.mark.parametrize("case", ["missing model", "corrupt model", "npz without arrays",
                                  "shape does not fit", "diagnose shape", "unknown scheme",
                                  "unwritable out", "depths with a model", "depths not integers",
                                  "repeated depth", "zero jobs", "cnn on vectors",
                                  "negative learning rate", "nan learning rate",
                                  "target accuracy above 1", "negative seed",
                                  "validation shape", "negative labels", "one scheme twice",
                                  "token model without data", "fractions for a token model"])
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, case):
    argv, words = bad_inputs(tmp_path)[case]
    code, out, err = run(capsys, *argv, *(["--epochs", "1"] if argv[0] == "compare" else []))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert "Traceback" not in err + out


def test_compare_and_diagnose_choose_the_loss_by_one_rule():
    from keras_initkit.experiment import loss_for

    def ending(activation):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])

    labels = np.array([0, 2, 1])
    assert loss_for(ending("softmax"), labels).get_config()["from_logits"] is False
    assert loss_for(ending(None), labels).get_config()["from_logits"] is True
    for targets in (np.array([-1, 0, 1]), labels.reshape(3, 1), labels.astype("float32")):
        assert isinstance(loss_for(ending(None), targets), keras.losses.MeanSquaredError)


def test_compare_other_base_models_and_recipes(capsys, tmp_path):
    code, out, err = run(capsys, "compare", "--arch", "resmlp", "--schemes", "as_built,fixup",
                         "--out", str(tmp_path / "r"), *TINY)
    assert code == 0, err
    result = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [(r["scheme"], r["at_init"]) for r in result["rows"]] == [
        ("as_built", "healthy"), ("fixup", "healthy")]
    assert result["settings"]["model"].startswith("resmlp(3 blocks")
    code, out, err = run(capsys, "compare", "--arch", "transformer", "--schemes",
                         "gpt2", "--out", str(tmp_path / "t"), *TINY)
    assert code == 0, err
    result = json.loads((tmp_path / "t" / "results.json").read_text())
    assert result["settings"]["data"] == "delayed copy"
    for row in result["rows"]:  # per-token accuracy of 16 classes: between 0 and 1
        assert 0 <= row["val_accuracy"] <= 1 and row["at_init"] == "healthy", row
    assert main(["compare", "--arch", "transformer", "--data", str(saved_digits(tmp_path)),
                 "--out", str(tmp_path / "x"), "--epochs", "1"]) == 2


def saved_digits(tmp_path):
    path = tmp_path / "floats.npz"
    np.savez(path, x_train=np.zeros((20, 5), "float32"), y_train=np.zeros(20, "int64"))
    return path


def test_compare_over_seeds_gives_intervals_and_a_paired_test(capsys, tmp_path):
    from keras_initkit.intervals import paired_p, t_interval

    tiny = TINY[:TINY.index("--seeds")] + TINY[TINY.index("--seeds") + 2:]
    code, printed, err = run(capsys, "compare", "--schemes", "zeros,he", "--seeds", "2",
                             "--out", str(tmp_path / "s"), *tiny)
    assert code == 0, err
    result = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [(r["scheme"], r["seed"]) for r in result["runs"]] == [
        (s, k) for s in ("zeros", "he") for k in (0, 1)]
    for row in result["rows"]:
        finals = [r["row"]["val_accuracy"] for r in result["runs"] if r["scheme"] == row["scheme"]]
        mean, half = t_interval(finals)
        assert row["seeds"] == 2 and row["val_accuracy"] == pytest.approx(mean)
        assert row["val_accuracy_ci"] == pytest.approx(half)
    zeros, he = result["rows"]
    assert he["vs_best"] == "best"  # zeros cannot break symmetry: chance accuracy on every seed
    p = paired_p(*[[r["row"]["val_accuracy"] for r in result["runs"] if r["scheme"] == s]
                   for s in ("zeros", "he")])
    assert zeros["vs_best"] == f"{'indistinguishable' if p >= 0.05 else 'worse'} (p={p:.2g})"
    assert len(result["bands"]["he"]["loss"]) == 2 and "±" in printed
    # Each run has its own seed: the two runs of a scheme differ.
    he_runs = [r["history"]["loss"] for r in result["runs"] if r["scheme"] == "he"]
    assert he_runs[0] != he_runs[1]
