"""One inference call of a model as a plain graph of operations, on every backend.

`residual.structure_of` reads the roles of the weights off the operations of
one call. Each backend shows them its own way: TensorFlow as a graph
(`tf.compat.v1.wrap_function`), JAX as a jaxpr (`jax.make_jaxpr` of
`stateless_call`, nested calls inlined), PyTorch as the torch functions the
call makes (`torch.overrides.TorchFunctionMode`, eagerly, under `no_grad`).
Each is reduced to the few kinds of operation the reader needs:

- `bilinear`: a product of two tensors (MatMul, Einsum, dot_general, matmul);
- `conv`: a convolution;
- `lookup`: rows gathered from a tensor (an embedding);
- `sum`: `a + b`;
- `softmax`: a softmax, input 0 its logits;
- `attention`: a fused attention, inputs (query, key, value, ...);
- `metadata`: an output that describes its input's shape, not its values;
- `other`: everything else.

A tensor is a key (an int); a graph lists its operations in execution order.
"""
import typing

import keras
import numpy as np

# The sizes a free (None) axis gets in the trace: batch 2, not 1, since Keras turns the sum
# of a (1, n) tensor into a bias add.
_FREE_SIZE = 32

_TF_KINDS = {
    **dict.fromkeys(("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"),
                    "bilinear"),
    **dict.fromkeys(("ResourceGather", "GatherV2", "Gather"), "lookup"),
    **dict.fromkeys(("AddV2", "Add"), "sum"),
    "Softmax": "softmax",
    **dict.fromkeys(("Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike"), "metadata"),
}
_JAX_KINDS = {"dot_general": "bilinear", "conv_general_dilated": "conv", "add": "sum",
              "add_any": "sum", "gather": "lookup"}
_TORCH_KINDS = {
    **dict.fromkeys(("matmul", "__matmul__", "__rmatmul__", "einsum", "mm", "bmm", "addmm",
                     "baddbmm", "linear", "tensordot", "dot"), "bilinear"),
    **dict.fromkeys(("embedding", "index_select", "take", "take_along_dim", "gather",
                     "__getitem__"), "lookup"),
    **dict.fromkeys(("add", "__add__", "__radd__"), "sum"),
    **dict.fromkeys(("softmax", "_softmax"), "softmax"),
    "scaled_dot_product_attention": "attention",
    **dict.fromkeys(("zeros_like", "ones_like", "empty_like", "full_like"), "metadata"),
}
# JAX calls whose body runs once, as written: inlined. A loop's or a branch's body is not.
_JAX_OPAQUE = ("scan", "while", "cond")


class Op:
    """One operation: its kind, its backend's own name, and its tensors' keys."""
    __slots__ = ("kind", "name", "inputs", "outputs")

    def __init__(self, kind, name, inputs, outputs):
        self.kind, self.name, self.inputs, self.outputs = kind, name, inputs, outputs

    def __repr__(self):
        return f"Op({self.kind}, {self.name}, {self.inputs} -> {self.outputs})"


class Graph(typing.NamedTuple):
    ops: list      # `Op`s in execution order
    shapes: dict   # key -> tuple of sizes (None where unknown), or None for an unknown rank
    inputs: set    # keys of the model's inputs
    weights: dict  # key -> path of the weight it is
    outputs: list  # keys of the model's outputs


class _Builder:
    def __init__(self):
        self.ops, self.shapes, self.inputs, self.weights = [], {}, set(), {}

    def new(self, shape):
        key = len(self.shapes)
        self.shapes[key] = None if shape is None else tuple(shape)
        return key

    def graph(self, outputs):
        return Graph(self.ops, self.shapes, self.inputs, self.weights, list(outputs))


def trace(model, x=None):
    """The graph of `model(x, training=False)` on the current backend.

    Args:
        model: A built `keras.Model`.
        x: Optional sample input (only its structure, shapes and dtypes matter);
            by default the model's own `inputs`.

    Returns:
        A `Graph`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(model, x)
    if backend == "jax":
        return _jax(model, _sample(model, x, sized=True))
    if backend == "torch":
        return _torch(model, _sample(model, x, sized=True))
    raise ValueError(
        "Reading a model's structure traces one call of it with TensorFlow, JAX or PyTorch; "
        f"received a model on the {backend!r} backend. Allowed: KERAS_BACKEND=tensorflow, "
        "jax or torch.")


class _Spec:
    """One input's shape and dtype (a leaf: not a tuple, which `keras.tree` would enter)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


def _sample(model, x, sized):
    """A `_Spec` per input: batch 2 and free axes _FREE_SIZE, or None where not `sized`."""
    if x is None:
        try:
            x = model.input
        except (AttributeError, ValueError):
            # A Sequential model built from `keras.Input` has `inputs` but no `input` in Keras
            # 3 until it is called as a functional graph.
            inputs = getattr(model, "inputs", None) or None
            x = inputs[0] if inputs and len(inputs) == 1 else inputs
        if x is None:
            raise ValueError(
                f"Model {model.name!r} has no symbolic inputs (a subclassed model): pass a "
                "sample batch as `x=` so that its graph can be traced.")

    def spec(t):
        dtype = keras.backend.standardize_dtype(getattr(t, "dtype", None) or "float32")
        shape = (2 if sized else None,) + tuple(
            (_FREE_SIZE if d is None and sized else d) for d in tuple(np.shape(t))[1:])
        return _Spec(shape, dtype)
    return keras.tree.map_structure(spec, x)


def _tensorflow(model, x):
    import tensorflow as tf  # here, not at import: JAX and PyTorch users need not load it

    def call(inputs):
        return model(inputs, training=False)

    def specs(sized):
        return keras.tree.map_structure(lambda s: tf.TensorSpec(s.shape, tf.as_dtype(s.dtype)),
                                        _sample(model, x, sized))

    # wrap_function builds the graph without tf.function's automatic control dependencies,
    # which the walks do not need. Static sizes (batch 2, free axes _FREE_SIZE) spare the
    # shape arithmetic of dynamic ones: 0.47 s instead of 0.7 s for GPT-2 small. A model that
    # cannot take them is traced with its dynamic shapes.
    try:
        graph = tf.compat.v1.wrap_function(call, [specs(sized=True)]).graph
    except Exception:  # any failure at those sizes: fall back to dynamic ones
        graph = tf.compat.v1.wrap_function(call, [specs(sized=False)]).graph
    builder, keys = _Builder(), {}

    def key(t):
        name = (t.op.name, t.value_index)
        if name not in keys:
            keys[name] = builder.new(None if t.shape.rank is None else t.shape.as_list())
        return keys[name]
    by_handle = {id(v.value.handle): v.path for v in model.weights
                 if hasattr(v.value, "handle")}
    captured = set()  # weights, and constants the call made (a ViT's position ids)
    for external, internal in graph.captures:
        captured.add(key(internal))
        if id(external) in by_handle:
            builder.weights[key(internal)] = by_handle[id(external)]
    builder.inputs.update(key(t) for t in graph.inputs if key(t) not in captured)
    # Keras runs a grouped convolution (ConvNeXt's depthwise one) as a call of a compiled
    # function: the call counts as a convolution when its body is one (a single conv op; a
    # user's function of several layers stays opaque).
    bodies = {f.signature.name: [n.op for n in f.node_def]
              for f in graph.as_graph_def().library.function}
    for op in graph.get_operations():
        if op.type == "Placeholder":
            continue
        kind = _TF_KINDS.get(op.type, "conv" if "Conv" in op.type else "other")
        if op.type in ("PartitionedCall", "StatefulPartitionedCall") and sum(
                "Conv" in t for t in bodies.get(op.get_attr("f").name, ())) == 1:
            kind = "conv"
        builder.ops.append(Op(kind, op.type, [key(t) for t in op.inputs],
                              [key(t) for t in op.outputs]))
    return builder.graph(key(t) for t in graph.outputs)


def _jax(model, sample):
    import jax
    from jax.extend.core import Literal

    trainable, frozen = model.trainable_variables, model.non_trainable_variables

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(tuple(shape), dtype)

    def call(trainable_values, frozen_values, inputs):
        return model.stateless_call(trainable_values, frozen_values, inputs, training=False)[0]

    closed = jax.make_jaxpr(call)(
        [spec(v.shape, v.dtype) for v in trainable], [spec(v.shape, v.dtype) for v in frozen],
        keras.tree.map_structure(lambda s: spec(s.shape, s.dtype), sample))
    builder = _Builder()

    def new(var):
        return builder.new(getattr(var.aval, "shape", None))

    def inline(jaxpr, in_keys):
        env = dict(zip(jaxpr.invars, in_keys))
        env.update((v, new(v)) for v in jaxpr.constvars)

        def read(v):
            return new(v) if isinstance(v, Literal) else env[v]
        for eqn in jaxpr.eqns:
            body = _jax_body(eqn)
            if body is not None:
                outs = inline(body, [read(v) for v in eqn.invars])
            else:
                name = eqn.primitive.name
                outs = [new(v) for v in eqn.outvars]
                builder.ops.append(Op(_JAX_KINDS.get(name, "other"), name,
                                      [env[v] for v in eqn.invars if not isinstance(v, Literal)],
                                      outs))
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    keys = [new(v) for v in closed.jaxpr.invars]
    paths = [v.path for v in list(trainable) + list(frozen)]
    builder.weights.update(zip(keys, paths))
    builder.inputs.update(keys[len(paths):])
    graph = builder.graph(inline(closed.jaxpr, keys))
    _mark_softmax(graph)
    return graph


def _jax_body(eqn):
    """The jaxpr a call runs once, in place of the call (a jit, a custom derivative's
    primal, a rematerialization), or None."""
    if eqn.primitive.name in _JAX_OPAQUE:
        return None
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        body = eqn.params.get(name)
        body = getattr(body, "jaxpr", body)
        if (body is not None and hasattr(body, "eqns") and len(body.invars) == len(eqn.invars)
                and len(body.outvars) == len(eqn.outvars)):
            return body
    return None


def _mark_softmax(graph, reach=4):
    """A jaxpr spells a softmax out: `e / sum(e)` with `e = exp(...)`. Such a division is
    marked `softmax`, its input 0 the exponential's input (the logits)."""
    producer = {k: op for op in graph.ops for k in op.outputs}
    for op in graph.ops:
        if op.name != "div" or len(op.inputs) != 2:
            continue
        numerator = producer.get(op.inputs[0])
        if numerator is None or numerator.name != "exp":
            continue
        front, seen = {op.inputs[1]}, set()
        for _ in range(reach):
            front = {k for f in front if f in producer for k in producer[f].inputs} - seen
            seen |= front
        if op.inputs[0] in seen:
            op.kind, op.inputs = "softmax", [numerator.inputs[0], op.inputs[1]]


def _torch(model, sample):
    import torch
    from torch.overrides import TorchFunctionMode

    builder, keys, alive = _Builder(), {}, []
    for variable in model.weights:
        keys[id(variable.value)] = key = builder.new(variable.shape)
        builder.weights[key] = variable.path
    sample = keras.tree.map_structure(lambda s: keras.ops.zeros(s.shape, s.dtype), sample)
    for tensor in keras.tree.flatten(sample):
        keys[id(tensor)] = key = builder.new(tensor.shape)
        builder.inputs.add(key)

    class Recorder(TorchFunctionMode):
        """Records each torch function the call makes (those it makes inside are not seen:
        the mode is off while it runs one)."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            # The inputs' keys before the call: an op may return its input (`to`, in place).
            ins = [keys[id(t)] for t in _torch_tensors((args, kwargs), torch) if id(t) in keys]
            out = func(*args, **(kwargs or {}))
            outs = []
            for tensor in _torch_tensors(out, torch):
                alive.append(tensor)  # holds each id unique while the trace lasts
                keys[id(tensor)] = key = builder.new(tensor.shape)
                outs.append(key)
            if outs:
                name = getattr(func, "__name__", "")
                kind = _TORCH_KINDS.get(name, "conv" if name.startswith("conv") else "other")
                builder.ops.append(Op(kind, name, ins, outs))
            return out

    with torch.no_grad(), Recorder():
        out = model(sample, training=False)
    return builder.graph(keys[id(t)] for t in _torch_tensors(out, torch))


def _torch_tensors(value, torch):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _torch_tensors(v, torch)]
    return []
