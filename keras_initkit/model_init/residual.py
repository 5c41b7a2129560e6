"""What role each weight plays in a model, read off the model's traced graph.

The whole-model recipes (GPT-2, BERT, ViT, Fixup, SkipInit, T-Fixup,
DeepNorm) need to know which kernel writes a residual branch back into the
stream, which kernels project queries, keys and values, which variable is an
embedding and which kernel is the readout. A Functional model shows its `Add`
layers, but a keras-hub block adds `x + f(x)` inside its own `call`, out of
Keras' sight. So the model is traced once with TensorFlow (inference mode) and
the roles are read off the graph of operations, where every sum is visible:

- a *kernel op* multiplies the signal by a weight of rank >= 2 (MatMul,
  Einsum, Conv...); a *lookup* gathers rows of a weight (an embedding);
- a sum `a + b` of two signals of the same shape is a *residual sum* when one
  side holds more kernel ops of its own (not shared with the other side) than
  the other, and the other holds at most one (an identity skip has none, a
  projection shortcut one). The side with more is the branch;
- the branch's *output* kernels are the first kernel ops met walking back from
  the sum (through biases, normalizations, LayerScale, activations and
  dropout); its other own kernels are *inner* ones;
- an attention is found at its softmax: walking back from the scores reaches
  the query and key kernels; the probabilities multiply a signal whose kernels
  are the values; the first kernel op after that product is the output
  projection;
- the *readout* kernels are the first kernel ops met walking back from the
  model's outputs without crossing a residual sum.
"""
import collections
import typing

import keras
import numpy as np

from .._compat import flat_layers
from ..activations import is_normalization

_BILINEAR = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")
_LOOKUPS = ("ResourceGather", "GatherV2", "Gather")
_SUMS = ("AddV2", "Add")
# The sizes a free (None) axis gets in the trace: batch 2, not 1, since Keras turns the sum
# of a (1, n) tensor into a bias add.
_FREE_SIZE = 32
# Ops whose output describes the signal's shape, not its values: the walks do not pass them.
_METADATA = ("Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike")


def _key(tensor):
    return tensor.op.name, tensor.value_index


def _is_kernel_op(op_type):
    return op_type in _BILINEAR or "Conv" in op_type


class Branch(typing.NamedTuple):
    """One residual branch: `stream + branch`."""
    output: tuple   # paths of the kernels whose output is added back to the stream
    inner: tuple    # paths of the branch's other kernels, in graph order
    norms: tuple    # paths of normalization scales between the output kernels and the sum
    shortcut: tuple  # paths of the kernels on the skip side (a projection shortcut)


class Attention(typing.NamedTuple):
    """One attention: paths of its query-key kernels, value kernels and output kernels."""
    query_key: tuple
    value: tuple
    output: tuple


class Structure:
    """The roles of a model's weights.

    Attributes:
        variables: `path -> keras.Variable`, every weight of the model.
        branches: list of `Branch`, in graph order.
        attention: list of `Attention`, in graph order.
        readout: tuple of the readout kernels' paths.
        embeddings: tuple of the looked-up weights' paths.
        kernels: tuple of every weight's path that a kernel op multiplies.
        owner: `path -> layer` (the innermost layer that owns the weight).
    """

    def __init__(self, variables, owner, branches, attention, readout, embeddings, kernels):
        self.variables, self.owner = variables, owner
        self.branches, self.attention = branches, attention
        self.readout, self.embeddings, self.kernels = readout, embeddings, kernels

    def role(self, path):
        """The role of one weight: `residual_out`, `residual_inner`, `shortcut`,
        `readout`, `embedding`, `position_embedding`, `class_token`, `kernel`, `bias`,
        `norm_scale`, `norm_shift`, `norm_statistic`, `layer_scale` or `other`."""
        return self.roles()[path]

    def roles(self):
        if getattr(self, "_roles", None) is None:
            self._roles = _roles(self)
        return self._roles


def _roles(structure):
    roles = {}
    for path, variable in structure.variables.items():
        name = path.rsplit("/", 1)[-1]
        layer = structure.owner.get(path)
        norm = layer is not None and is_normalization(layer, _input_shape(layer))
        if norm:
            roles[path] = ("norm_statistic" if "moving" in name else
                           "norm_shift" if name in ("beta", "bias", "offset") else "norm_scale")
        elif path in structure.embeddings:
            roles[path] = "embedding"
        elif "position" in path.lower() and len(variable.shape) >= 2:
            # A position embedding is sliced, not looked up, in many layers (keras-hub's).
            roles[path] = "position_embedding"
        elif "class_token" in name or "cls_token" in name:
            roles[path] = "class_token"
        elif path in structure.kernels:
            roles[path] = "kernel"
        elif name == "bias" or name.endswith("_bias"):
            roles[path] = "bias"
        else:
            roles[path] = "other"
    for branch in structure.branches:
        for path in branch.inner:
            roles[path] = "residual_inner"
        for path in branch.shortcut:
            roles[path] = "shortcut"
        for path in branch.output:
            roles[path] = "residual_out"
    for path in structure.readout:
        if roles.get(path) == "kernel":
            roles[path] = "readout"
    return roles


def _input_shape(layer):
    """The layer's input shape; for a layer called inside another layer's `call` (no Keras
    history), the shape its rank-1 weight implies, `(None, size)`."""
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError):
        sizes = {v.shape[0] for v in layer.weights if len(v.shape) == 1}
        return (None, sizes.pop()) if len(sizes) == 1 else None


def structure_of(model, x=None):
    """Finds the residual branches, attentions, embeddings and readout of a built model.

    Args:
        model: A built `keras.Model` (Functional, Sequential, a keras-hub
            backbone, or subclassed when `x` is given).
        x: Optional sample input (only its structure, shapes and dtypes
            matter); by default the model's own `inputs`.

    Returns:
        A `Structure`.

    Raises:
        ValueError: the backend is not TensorFlow, or the model has no
            symbolic inputs and no `x` was given.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Finding a model's residual blocks traces it with TensorFlow; received a model "
            f"on the {keras.backend.backend()!r} backend. Allowed: KERAS_BACKEND=tensorflow.")
    graph = _trace(model, x)
    variables = {v.path: v for v in model.weights}
    by_handle = {id(v.value.handle): v.path for v in model.weights
                 if hasattr(v.value, "handle")}
    owner = _owners(model)
    return _Reader(graph, by_handle).read(variables, owner)


def _trace(model, x):
    import tensorflow as tf  # here, not at import: JAX and PyTorch users need not load it

    if x is None:
        try:
            structure = model.input
        except (AttributeError, ValueError):
            structure = None
        if structure is None:
            raise ValueError(
                f"Model {model.name!r} has no symbolic inputs (a subclassed model): pass a "
                "sample batch as `x=` so that its graph can be traced.")
    else:
        structure = x

    def specs(sized):
        def spec(t):
            dtype = keras.backend.standardize_dtype(getattr(t, "dtype", None) or "float32")
            shape = (2 if sized else None,) + tuple(
                (_FREE_SIZE if d is None and sized else d) for d in tuple(np.shape(t))[1:])
            return tf.TensorSpec(shape, tf.as_dtype(dtype))
        return tf.nest.map_structure(spec, structure)

    def call(inputs):
        return model(inputs, training=False)

    # wrap_function builds the graph without tf.function's automatic control dependencies,
    # which the walks do not need. Static sizes (batch 2, free axes _FREE_SIZE) spare the
    # shape arithmetic of dynamic ones: 0.47 s instead of 0.7 s for GPT-2 small. A model that
    # cannot take them is traced with its dynamic shapes.
    try:
        return tf.compat.v1.wrap_function(call, [specs(sized=True)]).graph
    except Exception:  # any failure at those sizes: fall back to dynamic ones
        return tf.compat.v1.wrap_function(call, [specs(sized=False)]).graph


def _owners(model):
    owners = {}
    for layer in flat_layers(model):
        for variable in layer.weights:
            owners[variable.path] = layer  # inner layers come later and win
    return owners


class _Reader:
    """Walks one traced graph."""

    def __init__(self, graph, by_handle):
        self.ops = graph.get_operations()
        self.index = {op: i for i, op in enumerate(self.ops)}
        captured = {_key(internal): by_handle.get(id(external))
                    for external, internal in graph.captures}
        inputs = {_key(t) for t in graph.inputs if _key(t) not in captured}
        # Per tensor: does it carry the signal (depend on an input), and which weights feed it.
        self.signal, self.weights = set(), {}
        for op in self.ops:
            feeds = set()
            carries = False
            for t in op.inputs:
                if _key(t) in self.signal:
                    carries = True
                else:
                    feeds |= self.weights.get(_key(t), set())
            if op.type == "Placeholder":
                t = _key(op.outputs[0])
                if t in inputs:
                    self.signal.add(t)
                elif captured.get(t):
                    self.weights[t] = {captured[t]}
                continue
            for t in op.outputs:
                if carries and op.type not in _METADATA:
                    self.signal.add(_key(t))
                elif feeds:
                    self.weights[_key(t)] = feeds
        self.outputs = list(graph.outputs)
        # Per op: the inputs that carry the signal, and the weights that feed it.
        self.signal_inputs, self.fed_by = {}, {}
        for op in self.ops:
            keys = [(t, _key(t)) for t in op.inputs]
            self.signal_inputs[op] = [t for t, k in keys if k in self.signal]
            self.fed_by[op] = sorted({p for t, k in keys if k not in self.signal
                                      for p in self.weights.get(k, ())})
        self.parents = {op: [t.op for t in ts] for op, ts in self.signal_inputs.items()}

    def _signal_inputs(self, op):
        return self.signal_inputs[op]

    def _weights_of(self, op):
        return self.fed_by[op]

    def read(self, variables, owner):
        rank = {path: len(v.shape) for path, v in variables.items()}
        self.kernel_ops, lookups = {}, set()
        for op in self.ops:
            if not self._signal_inputs(op):
                continue
            heavy = [p for p in self._weights_of(op) if rank.get(p, 0) >= 2]
            if heavy and (op.type in _LOOKUPS):
                lookups.update(heavy)
            elif heavy and _is_kernel_op(op.type):
                self.kernel_ops[op] = tuple(heavy)
        norm_scales = {p for p, layer in owner.items()
                       if rank.get(p) == 1 and is_normalization(layer, _input_shape(layer))
                       and p.rsplit("/", 1)[-1] in ("gamma", "scale")}
        branches, sums = [], set()
        for op in self.ops:
            branch = self._residual(op, norm_scales)
            if branch is not None:
                branches.append(branch)
                sums.add(op)
        self.sums = sums
        kernels = self._paths(self.kernel_ops)
        readout = self._paths(op for t in self.outputs
                              for op in self._first_kernels(t, stop=sums)[0])
        return Structure(variables, owner, branches, self._attention(), readout,
                         tuple(sorted(lookups)), kernels)

    def _ancestors(self, tensor):
        """Ops the signal `tensor` depends on."""
        seen, stack, parents = set(), [tensor.op], self.parents
        while stack:
            op = stack.pop()
            if op not in seen:
                seen.add(op)
                stack.extend(parents[op])
        return seen

    def _first_kernels(self, tensor, stop=()):
        """Kernel ops first met walking back from `tensor`, and the weights passed on the way."""
        found, passed, seen, stack = [], set(), set(), [tensor.op]
        while stack:
            op = stack.pop()
            if op in seen:
                continue
            seen.add(op)
            if op in self.kernel_ops:
                found.append(op)
                continue
            if op in stop:
                continue
            passed.update(self.fed_by[op])
            stack.extend(self.parents[op])
        return sorted(found, key=self.index.get), passed

    def _residual(self, op, norm_scales):
        if op.type not in _SUMS or len(self._signal_inputs(op)) != 2:
            return None
        a, b = op.inputs
        if not (a.shape.is_compatible_with(b.shape) and a.shape.rank == b.shape.rank
                and a.shape.rank is not None and a.shape.rank >= 2):
            return None
        ancestors = [self._ancestors(t) for t in (a, b)]
        own = [sorted((o for o in ancestors[i] - ancestors[1 - i] if o in self.kernel_ops),
                      key=self.index.get) for i in (0, 1)]
        branch = 0 if len(own[0]) > len(own[1]) else 1
        if not own[branch] or len(own[1 - branch]) > 1 or len(own[branch]) <= len(
                own[1 - branch]):
            return None
        last, passed = self._first_kernels(op.inputs[branch])
        last = [o for o in last if o in own[branch]]
        if not last:
            return None
        return Branch(output=self._paths(last),
                      inner=self._paths([o for o in own[branch] if o not in last]),
                      norms=tuple(sorted(passed & norm_scales)),
                      shortcut=self._paths(own[1 - branch]))

    def _paths(self, ops):
        return tuple(dict.fromkeys(p for o in ops for p in self.kernel_ops[o]))

    def _attention(self):
        found = []
        for op in self.ops:
            if op.type != "Softmax" or not self._signal_inputs(op):
                continue
            query_key, _ = self._first_kernels(op.inputs[0])
            # The first product of the probabilities with another signal (not a kernel).
            products = self._forward(op.outputs[0], lambda o: o.type in _BILINEAR
                                     and o not in self.kernel_ops, first=True)
            if not products:
                continue
            product = products[0]
            other = [t for t in self._signal_inputs(product) if op not in self._ancestors(t)]
            value = [o for t in other for o in self._first_kernels(t)[0]]
            output = self._forward(product.outputs[0], lambda o: o in self.kernel_ops)
            found.append(Attention(self._paths(query_key), self._paths(value),
                                   self._paths(output)))
        return found

    def _forward(self, tensor, wanted, first=False):
        """Ops for which `wanted` holds, first met walking forward from `tensor` (not past
        them, nor past a residual sum), in graph order; only the nearest with `first`."""
        found, seen, queue = [], set(), collections.deque([tensor])
        while queue:
            t = queue.popleft()
            for op in t.consumers():
                if op in seen:
                    continue
                seen.add(op)
                if wanted(op):
                    if first:
                        return [op]
                    found.append(op)
                elif op not in self.sums:
                    queue.extend(op.outputs)
        return sorted(found, key=self.index.get)
