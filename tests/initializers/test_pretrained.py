"""Transfer-learning initialization: values read from .npz, .weights.h5 and .keras files."""
import keras
import numpy as np
import pytest

from keras_initkit.initializers import Pretrained, pretrained


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="hidden"),
                              keras.layers.Dense(3, name="head")], name="teacher")
    model.save(folder / "teacher.keras")
    model.save_weights(folder / "teacher.weights.h5")
    np.savez(folder / "teacher.npz", hidden=keras.ops.convert_to_numpy(model.layers[0].kernel))
    return folder, model


def value(init, shape, dtype="float32"):
    return keras.ops.convert_to_numpy(init(shape, dtype=dtype))


def test_npz_by_key(source):
    folder, model = source
    np.testing.assert_array_equal(value(Pretrained(str(folder / "teacher.npz"), "hidden"), (6, 5)),
                                  model.layers[0].kernel.numpy())


@pytest.mark.parametrize("key", ["teacher/hidden/kernel", "hidden/kernel"])
def test_keras_file_by_weight_path(source, key):
    folder, model = source
    np.testing.assert_array_equal(value(Pretrained(folder / "teacher.keras", key), (6, 5)),
                                  model.layers[0].kernel.numpy())


def test_weights_h5_by_dataset_path(source):
    folder, model = source
    init = Pretrained(str(folder / "teacher.weights.h5"), "layers/dense_1/vars/0")
    np.testing.assert_array_equal(value(init, (5, 3)), model.layers[1].kernel.numpy())


def test_a_new_model_starts_from_the_teacher(source):
    folder, model = source
    pretrained._arrays.cache_clear()  # read inside the layer's build: keys as saved
    student = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, kernel_initializer=Pretrained(folder / "teacher.keras",
                                                            "hidden/kernel"),
                           bias_initializer=Pretrained(folder / "teacher.keras", "hidden/bias")),
        keras.layers.Dense(2),  # a new head for the new task
    ])
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(student.layers[0](x), model.layers[0](x), rtol=1e-6)


def test_dtype_is_cast_and_a_wrong_key_lists_the_keys(source):
    folder, _ = source
    init = Pretrained(folder / "teacher.keras", "head/kernel")
    assert keras.backend.standardize_dtype(init((5, 3), dtype="float16").dtype) == "float16"
    with pytest.raises(ValueError, match="head/kernel"):
        Pretrained(folder / "teacher.keras", "head/kernal")((5, 3))


def test_values_float16_cannot_hold_are_refused_naming_the_key(tmp_path):
    path = tmp_path / "small.npz"
    mixed = np.full((4, 3), 0.5, "float32")
    mixed[0, 0] = 1e-9  # one weight below float16's smallest normal: rounding, taken
    np.savez(path, tiny=np.full((4, 3), 1e-9, "float32"), huge=np.full((4, 3), 1e6, "float32"),
             mixed=mixed)
    assert keras.ops.convert_to_numpy(Pretrained(path, "mixed")((4, 3), dtype="float16"))[1, 1] \
        == 0.5
    for key in ("tiny", "huge"):
        with pytest.raises(TypeError, match=f"key='{key}'.*float16"):
            Pretrained(path, key)((4, 3), dtype="float16")


def test_a_relative_path_still_reads_after_a_change_of_directory(source, monkeypatch):
    folder, model = source
    monkeypatch.chdir(folder)
    student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(
        5, kernel_initializer=Pretrained("teacher.npz", "hidden"))])
    monkeypatch.chdir(folder.parent)
    clone = keras.models.clone_model(student)  # rebuilt from the config, in another directory
    np.testing.assert_array_equal(clone.layers[0].kernel.numpy(),
                                  model.layers[0].kernel.numpy())
