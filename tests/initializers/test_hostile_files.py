"""Files and configs from somewhere else: refused with a ValueError or TypeError that names
the path, key or argument, and never a line of their code run, nothing unpickled.

A marker file stands for "code ran": `Boom` writes it when unpickled, and the Lambda layers
here write it when called. Each test that says "not written" first shows, where it can, that
the same object does write it when trusted, so that a passing test is not an empty one."""
import json
import os
import pickle
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_initkit  # noqa: F401  (registers the kit_* aliases, as a user's program would)
from keras_initkit import initializers as I

SafeModeScope = pytest.importorskip("keras.src.saving.serialization_lib").SafeModeScope


class Boom:
    """Unpickling it creates the file at `path`: the side effect a hostile pickle carries."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = str(tmp_path / "code_ran")
    monkeypatch.setenv("INITKIT_MARKER", path)  # where the lambdas below write
    return path


def edited(path, out, change):
    """A copy of a saved .keras file whose config.json `change` edited in place."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    change(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out


def layer_config(config, name):
    return next(item for item in config["config"]["layers"]
                if item["config"].get("name") == name)


def test_the_marker_works(marker):
    # The control for every "not written" below: unpickling a Boom does write the marker.
    pickle.loads(pickle.dumps(Boom(marker)))
    assert os.path.exists(marker)


# ---------------------------------------------------------------- Pretrained, called directly

def hostile_files(folder, marker):
    """name -> (path, key, words the error must hold): every way a file can be wrong."""
    folder.mkdir(exist_ok=True)
    files = {}
    for suffix, kind in [(".npz", "NumPy"), (".keras", "Keras model"), (".h5", "HDF5")]:
        path = folder / f"text{suffix}"
        path.write_text("not an array file\n")
        files[f"text as {suffix}"] = (path, "w", [str(path), kind])
        files[f"missing {suffix}"] = (folder / f"missing{suffix}", "w", ["does not exist"])
    path = folder / "pickle.npz"  # a plain pickle renamed
    path.write_bytes(pickle.dumps(Boom(marker)))
    files["pickle as .npz"] = (path, "w", [str(path), "never unpickles"])
    np.save(folder / "objects.npy", np.array([Boom(marker)], dtype=object), allow_pickle=True)
    os.replace(folder / "objects.npy", folder / "objects_npy.npz")
    files["object .npy as .npz"] = (folder / "objects_npy.npz", "w", [
        "objects_npy.npz", "allow_pickle=False"])
    np.save(folder / "plain.npy", np.ones((2, 3)))
    os.replace(folder / "plain.npy", folder / "plain_npy.npz")
    files["plain .npy as .npz"] = (folder / "plain_npy.npz", "w", ["plain_npy.npz", ".npy"])
    path = folder / "mixed.npz"  # an archive with one pickled member among real arrays
    np.savez(path, objects=np.array([Boom(marker)], dtype=object), w=np.ones((2, 3)),
             text=np.array(["ab", "cd", "ef"]).reshape(1, 3), nan=np.full((2, 3), np.nan),
             complex=np.ones((2, 3), complex), allow_pickle=True)
    files["object member"] = (path, "objects", ["key='objects'", "unpickling"])
    files["string member"] = (path, "text", ["key='text'", "<U2"])
    files["complex member"] = (path, "complex", ["key='complex'", "complex128"])
    files["NaN member"] = (path, "nan", ["key='nan'", "NaN"])
    files["wrong key"] = (path, "ww", ["key='ww'", "Did you mean ['w']"])
    files["wrong shape"] = (path, "w", ["key='w'", "(2, 3)", "(3, 2)"])
    return files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


def cases():
    return ["text as .npz", "text as .keras", "text as .h5", "missing .npz", "missing .keras",
            "missing .h5", "pickle as .npz", "object .npy as .npz", "plain .npy as .npz",
            "object member", "string member", "complex member", "NaN member", "wrong key",
            "wrong shape"]


@pytest.mark.parametrize("case", cases())
def test_pretrained_refuses_a_bad_file_by_name_and_runs_nothing(folder, tmp_path, case):
    marker = str(tmp_path / "code_ran")
    path, key, words = hostile_files(folder / case.replace(" ", "_"), marker)[case]
    with pytest.raises(ValueError) as info:
        I.Pretrained(str(path), key)((3, 2))
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert not os.path.exists(marker)


def test_a_good_member_of_an_archive_with_a_pickled_one_still_loads(folder, tmp_path):
    marker = str(tmp_path / "code_ran")
    path, _, _ = hostile_files(folder / "good_member", marker)["object member"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(I.Pretrained(str(path), "w")((2, 3))),
                                  np.ones((2, 3)))
    assert not os.path.exists(marker)


# ---------------------------------------------------------------- inside a saved model

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model whose first kernel comes from an .npz, saved; and the .npz."""
    folder = tmp_path_factory.mktemp("saved")
    np.savez(folder / "w.npz", w=np.ones((3, 2), "float32"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        2, name="d", kernel_initializer=I.Pretrained(str(folder / "w.npz"), "w"))])
    model.save(folder / "model.keras")
    return folder / "model.keras"


@pytest.fixture
def reads(monkeypatch):
    """The paths Pretrained reads from now on."""
    from keras_initkit.initializers import pretrained

    seen, read = [], pretrained._arrays
    monkeypatch.setattr(pretrained, "_arrays", lambda path, stamp: (seen.append(path),
                                                                     read(path, stamp))[1])
    return seen


@pytest.mark.parametrize("case", ["missing .npz", "text as .npz", "pickle as .npz",
                                  "object member", "wrong shape", "text as .keras"])
def test_a_saved_model_loads_its_weights_without_opening_its_pretrained_file(
        saved, folder, tmp_path, case, reads):
    # load_model restores the saved weights over whatever the initializers give, so the
    # file a config names, bad or gone, is not opened: the model loads, nothing runs.
    marker = str(tmp_path / "code_ran")
    path, key, _ = hostile_files(folder / ("saved_" + case.replace(" ", "_")), marker)[case]

    def point_at_it(config):
        layer_config(config, "d")["config"]["kernel_initializer"]["config"].update(
            path=str(path), key=key)

    model = keras.saving.load_model(edited(saved, tmp_path / "bad.keras", point_at_it))
    np.testing.assert_array_equal(model.get_layer("d").kernel.numpy(), np.ones((3, 2)))
    assert reads == [] and not os.path.exists(marker)
    # Its config stays unsealed in every copy: rebuilt from it, the kernel starts at zeros.
    rebuilt = keras.models.model_from_json(model.to_json())
    assert not rebuilt.get_layer("d").kernel.numpy().any() and reads == []
    # Built in code, the same path is read, and refused by name.
    with pytest.raises((ValueError, TypeError)) as info:
        I.Pretrained(str(path), key)((3, 2))
    assert str(path) in str(info.value) and reads == [os.path.abspath(path)] * (
        case != "missing .npz")


def test_only_a_config_this_process_wrote_opens_its_file(tmp_path, reads, monkeypatch):
    from keras_initkit.initializers import pretrained

    np.savez(tmp_path / "w.npz", w=np.full((3, 2), 7.0, "float32"))
    config = I.Pretrained(str(tmp_path / "w.npz"), "w").get_config()
    ours = I.Pretrained.from_config(config)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours((3, 2))), np.full((3, 2), 7.0))
    assert reads == [os.path.abspath(tmp_path / "w.npz")] and ours.get_config() == config
    # The same config seen by another process (another key), forged, edited, or unsealed.
    forged = {**config, "seal": config["seal"][::-1]}
    edited_path = {**config, "path": str(tmp_path / "other.npz")}
    unsealed = {k: v for k, v in config.items() if k != "seal"}
    monkeypatch.setattr(pretrained, "_SEAL_KEY", b"another process")
    for foreign in (config, forged, edited_path, unsealed, {**config, "seal": "\udcff"}):
        init = I.Pretrained.from_config(foreign)
        pretrained._warn_once.cache_clear()
        with pytest.warns(UserWarning, match="not written by this process"):
            assert not keras.ops.convert_to_numpy(init((3, 2))).any()
        assert "seal" not in init.get_config()  # no copy of it is trusted either
    assert len(reads) == 1


def test_a_keras_file_whose_model_reads_that_file_is_not_recursed(tmp_path):
    # A model initialized from a file, then saved over that file in this process: its
    # sealed config names the file it is in. Reading it rebuilds the model inside our own
    # load_model, where no Pretrained opens anything: the saved kernel, no recursion.
    looped = tmp_path / "looped.keras"

    def dense(init):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(
            2, name="d", kernel_initializer=init)])

    dense("ones").save(looped)
    model = dense(I.Pretrained(str(looped), "d/kernel"))
    model.get_layer("d").kernel.assign(np.full((3, 2), 2.0))
    model.save(looped)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(I.Pretrained(str(looped), "d/kernel")((3, 2))),
        np.full((3, 2), 2.0))
    np.testing.assert_array_equal(keras.saving.load_model(looped).get_layer("d").kernel.numpy(),
                                  np.full((3, 2), 2.0))


def test_a_saved_model_with_pretrained_weights_loads_without_the_file(tmp_path):
    np.savez(tmp_path / "w.npz", w=np.arange(6, dtype="float32").reshape(3, 2))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        2, name="d", kernel_initializer=I.Pretrained(str(tmp_path / "w.npz"), "w"))])
    model.get_layer("d").kernel.assign(model.get_layer("d").kernel + 1.0)  # as if trained
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    os.remove(tmp_path / "w.npz")
    for name in ("m.keras", "m.h5"):
        loaded = keras.saving.load_model(tmp_path / name)
        np.testing.assert_array_equal(loaded.get_layer("d").kernel.numpy(),
                                      np.arange(6).reshape(3, 2) + 1.0)
        assert loaded.get_layer("d").kernel_initializer.path == str(tmp_path / "w.npz")


@pytest.mark.parametrize("cls,change,words", [
    (I.HeNormal, {"seed": "abc"}, ["seed", "'abc'"]),
    (I.HeNormal, {"input_axes": "0"}, ["input_axes", "'0'"]),
    (I.Orthogonal, {"gain": "big"}, ["gain", "'big'"]),
    (I.VarianceScaling, {"mode": 3}, ["mode", "3", "fan_avg"]),
    (I.VarianceScaling, {"activation": ["relu"]}, ["activation", "['relu']"]),
    (I.VarianceScaling, {"activation_params": {"negative_slope": "x"}}, ["negative_slope"]),
    (I.RandomUniform, {"minval": "0"}, ["minval", "'0'"]),
    (I.Constant, {"value": [1]}, ["value", "[1]"]),
    (I.Identity, {"gain": None}, ["gain", "None"]),
    (I.DeltaOrthogonal, {"gain": float("nan")}, ["gain", "finite"]),
    (I.ICNR, {"scale": 2.5}, ["scale", "2.5"]),
    (I.ICNR, {"initializer": 7}, ["initializer", "7"]),
    (I.Sparse, {"sparsity": True}, ["sparsity", "True"]),
    (I.ConvolutionAware, {"eps_std": -1}, ["eps_std", ">= 0"]),
    (I.Pretrained, {"path": 3}, ["path", "3"]),
    (I.Orthogonal, {"bogus": 1}, ["Orthogonal config has unknown argument(s) 'bogus'"]),
    (I.Sparse, {"__init__": 1}, ["Sparse config has unknown argument(s) '__init__'"]),
    (I.Zeros, {"value": 1}, ["Zeros config has unknown argument(s) 'value'", "no arguments"]),
], ids=lambda v: getattr(v, "__name__", None) or str(v)[:30])
def test_a_keras_file_with_a_wrongly_typed_or_unknown_argument_names_it(tmp_path, cls, change,
                                                                        words):
    np.savez(tmp_path / "w.npz", w=np.ones((3, 3, 2, 4), "float32"))
    init = cls(str(tmp_path / "w.npz"), "w") if cls is I.Pretrained else cls()
    model = keras.Sequential([keras.Input((5, 5, 2)), keras.layers.Conv2D(
        4, 3, name="c", kernel_initializer=init)])
    model.save(tmp_path / "model.keras")

    def tamper(config):
        layer_config(config, "c")["config"]["kernel_initializer"]["config"].update(change)

    with pytest.raises((ValueError, TypeError)) as info:
        keras.saving.load_model(edited(tmp_path / "model.keras", tmp_path / "bad.keras", tamper))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# ---------------------------------------------------------------- Keras' safe mode

# The lambdas below create the marker when called. They read its path from the environment:
# Keras cannot reload a lambda's default arguments, and the control reloads one unsafely.


@pytest.fixture
def lambda_model(tmp_path, marker):
    """A saved model with a Lambda layer, and the control: loading it unsafely runs it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that it saves a lambda
        model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(
            lambda x: (open(__import__("os").environ["INITKIT_MARKER"], "w").close(), x)[1],
            name="lam"), keras.layers.Dense(2, name="d")])
        model.save(tmp_path / "lambda.keras")
    os.remove(marker)  # building the model called it once
    keras.saving.load_model(tmp_path / "lambda.keras", safe_mode=False)
    assert os.path.exists(marker), "the control: an unsafe load runs the Lambda"
    os.remove(marker)
    return tmp_path / "lambda.keras"


def test_a_lambda_layer_is_still_refused_in_safe_mode_after_importing_us(lambda_model, marker):
    with pytest.raises(ValueError, match="Lambda"):
        keras.saving.load_model(lambda_model)
    assert not os.path.exists(marker)


def test_pretrained_loads_a_keras_file_in_safe_mode_even_inside_an_unsafe_load(lambda_model,
                                                                               marker):
    with pytest.raises(ValueError) as info:
        I.Pretrained(lambda_model, "d/kernel")((3, 2))
    assert str(lambda_model) in str(info.value) and "Lambda" in str(info.value)
    # An outer load_model(..., safe_mode=False), or enable_unsafe_deserialization(), sets
    # Keras' safe-mode scope to False; the file Pretrained names is still loaded safely.
    with SafeModeScope(False), pytest.raises(ValueError, match="Lambda"):
        I.Pretrained(lambda_model, "d/kernel")((3, 2))
    assert not os.path.exists(marker)


def test_a_trusted_model_naming_a_lambda_file_does_not_run_it(lambda_model, marker, tmp_path,
                                                              reads):
    # The user trusts model.keras (loads it unsafely); its Pretrained names lambda.keras.
    np.savez(tmp_path / "w.npz", w=np.ones((3, 2), "float32"))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        2, name="d", kernel_initializer=I.Pretrained(str(tmp_path / "w.npz"), "w"))])
    model.save(tmp_path / "model.keras")

    def point_at_lambda(config):
        layer_config(config, "d")["config"]["kernel_initializer"]["config"].update(
            path=str(lambda_model), key="d/kernel")

    # load_model restores the saved kernel and leaves lambda.keras unopened.
    reads.clear()  # building the model above read w.npz
    loaded = keras.saving.load_model(edited(tmp_path / "model.keras", tmp_path / "bad.keras",
                                            point_at_lambda), safe_mode=False)
    assert reads == [] and not os.path.exists(marker)
    # Rebuilt from its (unsealed) config, unsafely, it still opens nothing.
    with SafeModeScope(False):
        keras.models.model_from_json(loaded.to_json())
    assert reads == []
    # Built in code inside an unsafe scope, it reads lambda.keras: in safe mode.
    with SafeModeScope(False), pytest.raises((ValueError, TypeError), match="Lambda"):
        I.Pretrained(str(lambda_model), "d/kernel")((3, 2))
    assert reads and not os.path.exists(marker)


def test_from_config_never_deserializes_a_lambda_initializer(marker):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        function = keras.saving.serialize_keras_object(lambda shape, dtype=None: (
            open(__import__("os").environ["INITKIT_MARKER"], "w").close(), np.zeros(shape))[1])
    assert function["class_name"] == "__lambda__"
    with pytest.raises(ValueError, match="`initializer` could not be resolved"):
        I.ICNR.from_config({"scale": 2, "initializer": function})
    with SafeModeScope(False), pytest.raises((ValueError, TypeError), match="`initializer`"):
        I.ICNR.from_config({"scale": 2, "initializer": function})  # unsafe: still refused
    # (A function that did get through would be refused as not an Initializer:
    # test_bad_input.py, ICNR(initializer=lambda ...).)
    assert not os.path.exists(marker)
