"""keras_initkit._compat against the installed Keras: each private access and its public
fallback agree, and nothing outside _compat touches a private Keras or TensorFlow name."""
import ast
import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_initkit import _compat

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_initkit"
L = keras.layers


class Block(L.Layer):
    """A layer holding sublayers in an attribute, a list and a dict, and a weight of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = L.Dense(4, name="inner")
        self.stack = [L.Dense(4, name="first"), L.Dense(4, name="second")]
        self.named = {"last": L.Dense(4, name="last")}

    def build(self, shape):
        self.scale = self.add_weight(shape=(4,), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(4,), initializer="zeros", name="shift",
                                     trainable=False)

    def call(self, x):
        for layer in [self.inner, *self.stack, self.named["last"]]:
            x = layer(x)
        return x * self.scale + self.shift


def nested_model():
    inputs = keras.Input((4,))
    hidden = L.Dense(4, name="head")(inputs)
    outputs = Block(name="block")(hidden)
    return keras.Model(inputs, L.Dense(2, name="out")(outputs))


class Doubler(keras.Model):
    def call(self, x):  # no `training` argument
        return x * 2


def names(layers):
    return [layer.name for layer in layers]


def test_flat_layers_and_its_public_fallback_find_the_same_layers():
    model = nested_model()
    block = model.get_layer("block")
    keras_walk = _compat.flat_layers(model)
    assert {"head", "block", "inner", "first", "second", "last", "out"} <= set(names(keras_walk))
    public = _compat._public_flat_layers(model, include_self=False, recursive=True)
    assert sorted(names(public)) == sorted(names(keras_walk))
    assert names(_compat.flat_layers(block, recursive=False)) == \
        names(_compat._public_flat_layers(block, include_self=False, recursive=False))
    assert _compat.flat_layers(block, include_self=True)[0] is block


def test_own_variables_leave_out_the_sublayers_and_keep_keras_order():
    block = nested_model().get_layer("block")
    own = _compat.own_variables(block)
    assert [v.name for v in own] == ["scale", "shift"]
    assert [v.name for v in _compat._public_own_variables(block)] == ["scale", "shift"]


def test_nodes_show_the_functional_graph():
    model = nested_model()
    head = model.get_layer("head")
    (node,) = _compat.inbound_nodes(head)
    assert all(isinstance(p.operation, L.InputLayer) for p in node.parent_nodes)
    assert [n.operation.name for n in _compat.outbound_nodes(head)] == ["block"]
    assert _compat.inbound_nodes(L.Dense(3)) == []  # never called


def test_compiled_loss_weights_and_the_training_argument():
    model = nested_model()
    model.compile(loss="mse", loss_weights=[0.5])
    assert list(_compat.compiled_loss_weights(model)) == [0.5]
    assert _compat.compiled_loss_weights(nested_model()) is None
    plain = Doubler()
    assert _compat.call_takes_training(plain) is False
    assert _compat._public_call_takes_training(plain) is False
    sequential = keras.Sequential([keras.Input((3,)), L.Dropout(0.5)])
    assert _compat.call_takes_training(sequential) is True
    assert _compat._public_call_takes_training(sequential) is True


def test_attention_parts_of_multi_head_attention():
    attention = L.MultiHeadAttention(num_heads=2, key_dim=4)
    x = np.zeros((1, 3, 8), "float32")
    attention(x, x)
    softmax, query, key = _compat.attention_parts(attention)
    assert isinstance(softmax, L.Softmax)
    assert isinstance(query, L.EinsumDense) and isinstance(key, L.EinsumDense)
    assert query is not key
    assert _compat.attention_parts(L.Dense(3)) == (None, None, None)


def test_flat_call_gives_the_same_result_as_the_call():
    function = tf.function(lambda a, b: a * 2 + b).get_concrete_function(
        tf.TensorSpec((3,)), tf.TensorSpec((3,)))
    a, b = tf.constant([1.0, 2.0, 3.0]), tf.constant([0.5, 0.5, 0.5])
    call = _compat.flat_call(function)
    assert call is not None
    np.testing.assert_array_equal(call([a, b]).numpy(), function(a, b).numpy())


def test_strategy_stack():
    seen = []

    @tf.function
    def inside():
        graph = tf.compat.v1.get_default_graph()
        _compat.clear_strategy_stack(graph)  # nothing on it: a no-op
        seen.append(len(getattr(graph, "_distribution_strategy_stack", [])))
        return tf.constant(0)

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        inside()
    assert seen == [0]


def test_safe_mode_refuses_a_lambda_even_inside_unsafe_deserialization(tmp_path):
    model = keras.Sequential([keras.Input((2,)), L.Lambda(lambda x: x * 2)])
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with _compat.safe_mode(True), pytest.raises(ValueError, match="[Ll]ambda"):
        keras.saving.load_model(path, safe_mode=False)


def test_saving_children_list_a_models_layers_as_saving_does():
    model = nested_model()
    children = dict(_compat.saving_children(model))
    assert names(children["layers"])[-3:] == ["head", "block", "out"]
    assert isinstance(model, _compat.saveable_type())


def _our_private_names():
    """Underscore names that keras_initkit itself defines: attributes it sets, functions,
    classes, module globals and arguments."""
    ours = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.arg):
                ours.add(node.arg)
            elif isinstance(node, ast.alias):
                ours.add(node.asname or node.name.split(".")[0])
    return {name for name in ours if name.startswith("_")}


def test_nothing_outside_compat_touches_a_private_keras_or_tensorflow_name():
    ours, found = _our_private_names(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_compat.py":
            continue
        source = path.read_text()
        where = os.path.relpath(path, PACKAGE.parent)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                found += [f"{where}:{node.lineno} imports {m}" for m in modules
                          if m.startswith(("keras.src", "tensorflow.python"))]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and node.attr not in ours:
                found.append(f"{where}:{node.lineno} reads .{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
                    "getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1 and \
                    isinstance(node.args[1], ast.Constant) and \
                    str(node.args[1].value).startswith("_") and \
                    not str(node.args[1].value).startswith("__") and \
                    node.args[1].value not in ours:
                found.append(f"{where}:{node.lineno} {node.func.id}s {node.args[1].value!r}")
    assert not found, "private Keras or TensorFlow names outside _compat.py:\n" + \
        "\n".join(found)


def test_nothing_reads_the_call_stack():
    # What the caller's frames hold is no API: a Keras release may rename any local.
    found = [f"{os.path.relpath(path, PACKAGE.parent)}: {word}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for word in ("currentframe", "_getframe", "f_back", "f_locals", "inspect.stack")
             if word in path.read_text()]
    assert not found, "call-stack reading:\n" + "\n".join(found)


def test_one_process_is_not_multi_worker():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert _compat.in_multi_worker_mode(strategy) is False
    assert _compat.in_multi_worker_mode(object()) is False  # no strategy: the public path


def test_name_scope_path_and_its_public_fallback(monkeypatch):
    def inside():
        with keras.name_scope("outer"), keras.name_scope("inner"):
            return _compat.name_scope_path()

    assert (_compat.name_scope_path(), inside()) == ("", "outer/inner")
    monkeypatch.setitem(__import__("sys").modules, "keras.src.backend.common.name_scope", None)
    assert inside() == "outer/inner"


def test_learning_rate_schedule_and_its_public_fallback():
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    optimizer = keras.optimizers.SGD(decay)
    assert _compat.learning_rate_schedule(optimizer) is decay
    assert _compat.learning_rate_schedule(keras.optimizers.SGD(0.1)) is None  # a variable

    class Public:  # an optimizer without the private name: the schedule from its config
        def get_config(self):
            return optimizer.get_config()

    again = _compat.learning_rate_schedule(Public())
    assert isinstance(again, type(decay)) and again.get_config() == decay.get_config()
