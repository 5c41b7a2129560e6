"""What role each weight plays in a model, read off the model's traced graph.

The whole-model recipes (GPT-2, BERT, ViT, Fixup, SkipInit, T-Fixup,
DeepNorm) need to know which kernel writes a residual branch back into the
stream, which kernels project queries, keys and values, which variable is an
embedding and which kernel is the readout. A Functional model shows its `Add`
layers, but a keras-hub block adds `x + f(x)` inside its own `call`, out of
Keras' sight. So one inference call of the model is traced (`traced_graph`:
TensorFlow's graph, JAX's jaxpr or the torch functions PyTorch runs) and the
roles are read off its operations, where every sum is visible:

- a *kernel op* multiplies the signal by a weight of rank >= 2 (a bilinear
  product or a convolution); a *lookup* gathers rows of a weight (an embedding);
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
  projection. A fused attention (PyTorch's `scaled_dot_product_attention`)
  takes query, key and value as its inputs 0, 1 and 2;
- the *readout* kernels are the first kernel ops met walking back from the
  model's outputs without crossing a residual sum.
"""
import collections
import typing

from .._compat import flat_layers
from ..activations import is_normalization
from .traced_graph import trace


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
        norm = layer is not None and is_normalization(layer, input_shape_of(layer))
        if norm:
            roles[path] = ("norm_statistic" if "moving" in name else
                           "norm_shift" if name in ("beta", "bias", "offset") else "norm_scale")
        elif path in structure.embeddings:
            roles[path] = "embedding"
        elif "position" in path.lower() and len(variable.shape) >= 2 \
                and path not in structure.kernels:
            # A position embedding is sliced, not looked up, in many layers (keras-hub's);
            # a kernel of a layer named "position..." multiplies the signal and stays a kernel.
            roles[path] = "position_embedding"
        elif ("class_token" in name or "cls_token" in name) and path not in structure.kernels:
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


def input_shape_of(layer):
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
        ValueError: the backend is not TensorFlow, JAX or PyTorch, or the
            model has no symbolic inputs and no `x` was given.
    """
    variables = {v.path: v for v in model.weights}
    return _Reader(trace(model, x)).read(variables, _owners(model))


def _owners(model):
    owners = {}
    for layer in flat_layers(model):
        for variable in layer.weights:
            owners[variable.path] = layer  # inner layers come later and win
    return owners


class _Reader:
    """Walks one traced graph (`traced_graph.Graph`)."""

    def __init__(self, graph):
        self.ops, self.shapes, self.outputs = graph.ops, graph.shapes, graph.outputs
        self.index = {op: i for i, op in enumerate(self.ops)}
        self.producer = {k: op for op in self.ops for k in op.outputs}
        self.consumers = collections.defaultdict(list)
        for op in self.ops:
            for k in dict.fromkeys(op.inputs):
                self.consumers[k].append(op)
        # Per tensor: does it carry the signal (depend on an input), and which weights feed it.
        self.signal = set(graph.inputs)
        self.weights = {k: {path} for k, path in graph.weights.items()}
        for op in self.ops:
            feeds, carries = set(), False
            for k in op.inputs:
                if k in self.signal:
                    carries = True
                else:
                    feeds |= self.weights.get(k, set())
            for k in op.outputs:
                if carries and op.kind != "metadata":
                    self.signal.add(k)
                elif feeds:
                    self.weights[k] = feeds
        # Per op: the inputs that carry the signal, and the weights that feed it.
        self.signal_inputs, self.fed_by, self.parents = {}, {}, {}
        for op in self.ops:
            self.signal_inputs[op] = [k for k in op.inputs if k in self.signal]
            self.fed_by[op] = sorted({p for k in op.inputs if k not in self.signal
                                      for p in self.weights.get(k, ())})
            self.parents[op] = [self.producer[k] for k in self.signal_inputs[op]
                                if k in self.producer]

    def read(self, variables, owner):
        rank = {path: len(v.shape) for path, v in variables.items()}
        self.kernel_ops, lookups = {}, set()
        for op in self.ops:
            if not self.signal_inputs[op]:
                continue
            heavy = [p for p in self.fed_by[op] if rank.get(p, 0) >= 2]
            if heavy and op.kind == "lookup":
                lookups.update(heavy)
            elif heavy and op.kind in ("bilinear", "conv"):
                self.kernel_ops[op] = tuple(heavy)
        norm_scales = {p for p, layer in owner.items()
                       if rank.get(p) == 1 and is_normalization(layer, input_shape_of(layer))
                       and p.rsplit("/", 1)[-1] in ("gamma", "scale")}
        branches, sums = [], set()
        for op in self.ops:
            branch = self._residual(op, norm_scales)
            if branch is not None:
                branches.append(branch)
                sums.add(op)
        self.sums = sums
        kernels = self._paths(self.kernel_ops)
        readout = self._paths(op for k in self.outputs
                              for op in self._first_kernels(k, stop=sums)[0])
        return Structure(variables, owner, branches, self._attention(), readout,
                         tuple(sorted(lookups)), kernels)

    def _ancestors(self, key):
        """Ops the signal `key` depends on."""
        seen, stack, parents = set(), self._producers(key), self.parents
        while stack:
            op = stack.pop()
            if op not in seen:
                seen.add(op)
                stack.extend(parents[op])
        return seen

    def _producers(self, key):
        return [self.producer[key]] if key in self.producer else []

    def _first_kernels(self, key, stop=()):
        """Kernel ops first met walking back from `key`, and the weights passed on the way."""
        found, passed, seen, stack = [], set(), set(), self._producers(key)
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

    def _same_shape(self, a, b):
        a, b = self.shapes[a], self.shapes[b]
        return (a is not None and b is not None and len(a) == len(b) >= 2
                and all(i is None or j is None or i == j for i, j in zip(a, b)))

    def _residual(self, op, norm_scales):
        if op.kind != "sum" or len(op.inputs) != 2 or len(self.signal_inputs[op]) != 2:
            return None
        if not self._same_shape(*op.inputs):
            return None
        ancestors = [self._ancestors(k) for k in op.inputs]
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
            if not self.signal_inputs[op]:
                continue
            if op.kind == "softmax":
                query_key, _ = self._first_kernels(op.inputs[0])
                # The first product of the probabilities with another signal (not a kernel).
                products = self._forward(op.outputs[0], lambda o: o.kind == "bilinear"
                                         and o not in self.kernel_ops, first=True)
                if not products:
                    continue
                product = products[0]
                values = [k for k in self.signal_inputs[product]
                          if op not in self._ancestors(k)]
            elif op.kind == "attention" and len(op.inputs) >= 3:
                query_key = sorted({o for k in op.inputs[:2] for o in self._first_kernels(k)[0]},
                                   key=self.index.get)
                product, values = op, op.inputs[2:3]
            else:
                continue
            value = [o for k in values for o in self._first_kernels(k)[0]]
            output = self._forward(product.outputs[0], lambda o: o in self.kernel_ops)
            found.append(Attention(self._paths(query_key), self._paths(value),
                                   self._paths(output)))
        return found

    def _forward(self, key, wanted, first=False):
        """Ops for which `wanted` holds, first met walking forward from `key` (not past
        them, nor past a residual sum), in graph order; only the nearest with `first`."""
        found, seen, queue = [], set(), collections.deque([key])
        while queue:
            k = queue.popleft()
            for op in self.consumers.get(k, ()):
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
