"""transfer_weights: trained weights start a new model, from a model, .keras or .weights.h5."""
import json
import re

import keras
import numpy as np
import pytest

from keras_initkit.model_init.transfer import transfer_weights

L = keras.layers
BODY = ("body_1", "body_bn", "body_2")


def dense(units, name, seed, activation=None):
    return L.Dense(units, activation=activation, name=name,
                   kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                   bias_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed + 100))


def net(head_units, names=("body_1", "body_bn", "body_2", "head"), seed=0, model_name="student"):
    return keras.Sequential([
        keras.Input((6,)),
        dense(8, names[0], seed + 1, "relu"),
        L.BatchNormalization(name=names[1]),
        dense(8, names[2], seed + 2, "relu"),
        dense(head_units, names[3], seed + 3),
    ], name=model_name)


def values(layer):
    return [keras.ops.convert_to_numpy(v) for v in layer.weights]


def assert_same(layer_a, layer_b):
    a, b = values(layer_a), values(layer_b)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def differs(layer_a, layer_b):
    return any(x.shape != y.shape or not np.array_equal(x, y)
               for x, y in zip(values(layer_a), values(layer_b)))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A source trained a few steps (so BatchNormalization's moving statistics moved), saved."""
    folder = tmp_path_factory.mktemp("transfer")
    model = net(3, seed=10, model_name="teacher")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    moving_mean = keras.ops.convert_to_numpy(model.get_layer("body_bn").moving_mean)
    assert np.abs(moving_mean).max() > 1e-3  # the moving statistics are not their initial zeros
    model.save(folder / "teacher.keras")
    model.save_weights(folder / "teacher.weights.h5")  # holds the optimizer's slots too
    return model, folder


def source_of(teacher, kind):
    model, folder = teacher
    return {"model": model, "keras": folder / "teacher.keras",
            "weights.h5": str(folder / "teacher.weights.h5")}[kind]


@pytest.mark.parametrize("kind", ["model", "keras", "weights.h5"])
def test_by_name_copies_the_body_and_leaves_the_new_head(teacher, kind):
    model = teacher[0]
    student = net(5)
    head_before = values(student.get_layer("head"))
    assert all(differs(student.get_layer(n), model.get_layer(n)) for n in BODY)

    report = transfer_weights(source_of(teacher, kind), student)

    for name in BODY:  # every variable, BatchNormalization's moving mean and variance too
        assert_same(student.get_layer(name), model.get_layer(name))
    assert len(student.get_layer("body_bn").weights) == 4
    for before, after in zip(head_before, values(student.get_layer("head"))):
        np.testing.assert_array_equal(before, after)  # the fresh head is untouched
    assert report.copied == [(n, n) for n in BODY]
    assert report.skipped == [("head", "head", [(8, 5), (5,)], [(8, 3), (3,)], "shape mismatch")]
    assert report.initialized == ["head"]
    text = str(report)
    assert "head" in text and "(8, 5)" in text and "(8, 3)" in text and "3 copied" in text
    assert json.loads(json.dumps(report.to_dict()))["skipped"][0]["source_shapes"] == [[8, 3], [3]]


@pytest.mark.parametrize("kind", ["model", "weights.h5"])
def test_by_order_with_other_names(teacher, kind):
    model = teacher[0]
    student = net(3, names=("s1", "s_bn", "s2", "out"))
    report = transfer_weights(source_of(teacher, kind), student, match="order")
    for mine, theirs in zip(("s1", "s_bn", "s2", "out"), BODY + ("head",)):
        assert_same(student.get_layer(mine), model.get_layer(theirs))
    assert report.copied == list(zip(("s1", "s_bn", "s2", "out"), BODY + ("head",)))
    assert report.skipped == [] and report.initialized == []


def test_by_shape_takes_the_first_unused_layer_of_equal_shapes(teacher):
    model = teacher[0]
    # By order, q (8, 8) would meet the BatchNormalization; by shape it finds body_2.
    student = keras.Sequential([keras.Input((6,)), dense(8, "p", 1), dense(8, "q", 2),
                                L.BatchNormalization(name="r"), dense(3, "s", 3),
                                dense(4, "extra", 4)])
    extra_before = values(student.get_layer("extra"))
    report = transfer_weights(model, student, match="shape")
    for mine, theirs in zip("pqrs", ("body_1", "body_2", "body_bn", "head")):
        assert_same(student.get_layer(mine), model.get_layer(theirs))
    assert report.copied == [("p", "body_1"), ("q", "body_2"), ("r", "body_bn"), ("s", "head")]
    assert report.skipped == [("extra", None, [(3, 4), (4,)], None, "no source layer")]
    for before, after in zip(extra_before, values(student.get_layer("extra"))):
        np.testing.assert_array_equal(before, after)


def test_weights_h5_keeps_the_order_past_ten_layers(tmp_path):
    """The file lists dense_10 before dense_2; the copy must not follow that."""
    def stack(seed):
        return keras.Sequential([keras.Input((4,))] + [dense(4, f"d{seed}_{i}", seed + i)
                                                       for i in range(12)])
    source, student = stack(0), stack(50)
    source.save_weights(tmp_path / "stack.weights.h5")
    for match in ("order", "shape"):
        report = transfer_weights(tmp_path / "stack.weights.h5", student, match=match)
        assert len(report.copied) == 12
        for mine, theirs in zip(student.layers, source.layers):
            assert_same(mine, theirs)


def test_strict_raises_naming_the_layer_and_both_shapes_and_copies_nothing(teacher):
    student = net(5)
    before = values(student.get_layer("body_1"))
    with pytest.raises(ValueError, match=r"'head'.*\(8, 5\).*\(8, 3\)"):
        transfer_weights(teacher[0], student, strict=True)
    for x, y in zip(before, values(student.get_layer("body_1"))):
        np.testing.assert_array_equal(x, y)
    # A target layer with weights that finds no source is an error too.
    renamed = net(3, names=("body_1", "body_bn", "body_2", "new_head"))
    with pytest.raises(ValueError, match=r"'new_head'.*\(8, 3\)"):
        transfer_weights(teacher[0], renamed, strict=True)
    assert transfer_weights(teacher[0], net(3), strict=True).initialized == []


def test_bad_arguments(teacher, tmp_path):
    model, folder = teacher
    with pytest.raises(ValueError, match=r"`match`.*'name', 'order', 'shape'.*'names'"):
        transfer_weights(model, net(3), match="names")
    with pytest.raises(ValueError, match="not built"):
        transfer_weights(model, keras.Sequential([L.Dense(3)]))
    with pytest.raises(TypeError, match="keras.Model"):
        transfer_weights(model, L.Dense(3))
    with pytest.raises(ValueError, match="not built"):
        transfer_weights(keras.Sequential([L.Dense(3)]), net(3))
    with pytest.raises(TypeError, match="source"):
        transfer_weights(3, net(3))
    with pytest.raises(TypeError, match="strict"):
        transfer_weights(model, net(3), strict="yes")
    for name in ("teacher.h5", "teacher.npz", "teacher"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ValueError, match=rf"\.keras or \.weights\.h5.*{re.escape(name)}'"):
            transfer_weights(tmp_path / name, net(3))
    missing = tmp_path / "absent.weights.h5"
    with pytest.raises(FileNotFoundError, match="absent.weights.h5"):
        transfer_weights(missing, net(3))


def nested(head_units, seed):
    body = keras.Sequential([dense(8, "a", seed + 1, "relu"), L.BatchNormalization(name="bn"),
                             dense(8, "b", seed + 2)], name="backbone")
    x = keras.Input((6,))
    return keras.Model(x, dense(head_units, "head", seed + 3)(body(x)))


@pytest.mark.parametrize("kind", ["model", "weights.h5"])
def test_nested_model_transfers_its_inner_layers(tmp_path, kind):
    source = nested(3, seed=20)
    bn = source.get_layer("backbone").get_layer("bn")
    rng = np.random.default_rng(1)
    for variable in bn.weights:  # moving statistics away from their 0 / 1 starts
        variable.assign(rng.uniform(0.5, 2.0, size=variable.shape).astype("float32"))
    if kind == "weights.h5":
        source.save_weights(tmp_path / "nested.weights.h5")
    student = nested(5, seed=40)
    report = transfer_weights(source if kind == "model" else tmp_path / "nested.weights.h5",
                              student)
    for name in ("a", "bn", "b"):
        assert_same(student.get_layer("backbone").get_layer(name),
                    source.get_layer("backbone").get_layer(name))
    assert report.copied == [(f"backbone/{n}", f"backbone/{n}") for n in ("a", "bn", "b")]
    assert [entry[0] for entry in report.skipped] == ["head"]


def test_recurrent_cell_is_the_leaf(tmp_path):
    def rnn(head_units, seed):
        return keras.Sequential([keras.Input((4, 3)),
                                 L.LSTM(5, name="rnn", kernel_initializer=keras.initializers
                                        .GlorotUniform(seed=seed)),
                                 dense(head_units, "out", seed + 1)])
    source = rnn(2, 1)
    source.save_weights(tmp_path / "rnn.weights.h5")
    student = rnn(7, 2)
    report = transfer_weights(tmp_path / "rnn.weights.h5", student)
    assert_same(student.get_layer("rnn"), source.get_layer("rnn"))
    assert report.copied == [("rnn/lstm_cell", "rnn/lstm_cell")]
    assert report.initialized == ["out"]
