"""The probe: every layer's activations and every weight's gradient on one batch.

One compiled pass, one transfer to the host, and no trace: the model runs
through `stateless_call`, so weights, BatchNormalization moving statistics and
RNG seed states are exactly as they were. It runs in training mode, because
that is the network training sees (BatchNormalization normalizes with batch
statistics; an untrained MobileNetV2 in inference mode shows activations a
million times too small).

Activations are caught by wrapping each layer's `call` while the probe
function is traced, so Sequential, Functional, nested and subclassed models
all report their inner layers, in the order they run. A layer called twice
(a shared layer) is reported once per call.

On JAX and PyTorch the same statistics come from the same `stateless_call`
and each backend's own gradient: `jax.value_and_grad` under `jax.jit` (a
zero "tap" added to each recorded output gives the gradient with respect
to it), and `torch.autograd.grad`. The numbers agree with TensorFlow's to
float32 rounding.

Under a `tf.distribute` strategy the probe runs replica-locally: on one
device, on the whole batch, with no collective, as if no strategy were
active, so its numbers are those of a single-device run. Its gradient, of
the batch's mean loss, is the one the optimizer applies: Keras gives each
replica its shard's mean loss divided by the number of replicas and sums
their gradients, which for equal shards is that same gradient. A statistic
such as the dead fraction is of the whole batch, which per-shard numbers
could not give without more collectives; and with no collective, a probe
costs no communication and cannot leave another worker waiting.
"""
import typing
import warnings

import keras
import numpy as np
from keras import ops

from .. import activations as acts
from .._compat import (
    attention_parts,
    call_takes_training,
    clear_strategy_stack,
    compiled_loss_weights,
    flat_call,
    flat_layers,
)
from . import stats

_SURROGATE_SEED = 1234
# Compiled probes kept per Probe, the latest first to stay: a batch signature, with or without
# targets and histograms, and the exact variant for NaN make up to 8 in steady use.
MAX_TRACES = 8
# Backends whose probe runs through `stateless_call` and the backend's own gradient.
STATELESS_BACKENDS = ("jax", "torch")
_NOT_YET = object()


class LayerRow(typing.NamedTuple):
    """One recorded layer call of a probe.

    Attributes:
        path: The layer's unique path (a shared layer's later calls end in "(call k)").
        layer: The layer.
        stats: `stats.ACTIVATION_FIELDS` -> float. `input_*` describe the
            layer's input (the `parent` row's output, or a model input).
        parent: Index of the row whose output the layer read (its first
            input; for a merge, the input made first, the stream a residual
            branch is computed from), or None for a model input.
        is_output: Whether the output is a model output.
        input_shape: The static shape of its (first) input, or None.
    """

    path: str
    layer: object
    stats: dict
    parent: typing.Optional[int] = None
    is_output: bool = False
    input_shape: typing.Optional[tuple] = None


class WeightRow(typing.NamedTuple):
    """One trainable weight of a probe: its path, the layer that owns it (or None),
    `stats.WEIGHT_FIELDS` -> float, and its shape."""

    path: str
    layer: object
    stats: dict
    shape: tuple = ()


class InGraphTables(typing.NamedTuple):
    """What an `in_graph_hook` receives, inside the compiled probe: `activations` and
    `weights` are tensors of shape (rows, len(stats.*_FIELDS)); `activation_paths` and
    `weight_paths` name their rows; `all_finite` is a bool tensor, false when the numbers
    assumed no NaN or Inf wrongly (the exact pass follows, and calls the hook again);
    `kinds` gives each activation row's `stats.SEQUENCE`, `stats.ATTENTION` or None."""

    activations: object
    weights: object
    activation_paths: list
    weight_paths: list
    all_finite: object
    kinds: list = ()


class HookOutput(typing.NamedTuple):
    """What an `in_graph_hook` may return: `numbers` (a float tensor, flat, brought to the
    host with the statistics), `tensors` (left on the device), and `about` (a Python
    object kept with the trace, to say what the tensors are)."""

    numbers: object
    tensors: list = ()
    about: object = None


class ProbeResult:
    """The numbers of one probe, on the host.

    Attributes:
        activations: `LayerRow`s in the order the layers ran.
        weights: `WeightRow`s, one per trainable weight.
        loss: the loss the gradients are of.
        shared: A dict that every result of the same trace of its probe shares, for
            what depends on the layers alone: "kinds", each activation row's extra
            statistics (`stats.ATTENTION`, `stats.SEQUENCE` or None); the findings keep
            their layout in it.
        samples: The batch's size (its first input's first axis), or None.
        hook_numbers, hook_tensors: What the probe's `in_graph_hook` returned
            (`HookOutput`): its numbers, flat, on the host (a NumPy array, empty
            without a hook), and its tensors; `shared["hook"][1]` is its `about`.
    """

    def __init__(self, activations, weights, loss, shared=None):
        self.activations, self.weights, self.loss = activations, weights, loss
        self.shared = {} if shared is None else shared
        self.hook_numbers, self.hook_tensors = np.zeros(0, "float32"), []
        self.samples = None


def _batch_size(x):
    shape = getattr(next(iter(keras.tree.flatten(x)), None), "shape", None)
    return int(shape[0]) if shape is not None and len(shape) and shape[0] is not None else None


def _floats(args):
    """Every float tensor in `args`, as a tuple."""
    return tuple(t for t in keras.tree.flatten(args) if hasattr(t, "dtype") and
                 keras.backend.is_float_dtype(keras.backend.standardize_dtype(t.dtype)))


def _first_float(output):
    for tensor in keras.tree.flatten(output):
        if hasattr(tensor, "dtype") and keras.backend.is_float_dtype(
                keras.backend.standardize_dtype(tensor.dtype)) and len(tensor.shape) >= 1:
            return tensor
    return None


class Probe:
    """Activation and gradient statistics of a built Keras model, one batch at a time.

    Args:
        model: A built Keras model (TensorFlow, JAX or PyTorch backend).
        loss: Optional loss (name, `keras.losses.Loss` or callable
            `loss(y_true, y_pred)`) used when `y` is given. Default: the loss
            the model was compiled with.
        saturation_threshold: |value| mapped onto [-1, 1] above which a
            bounded activation counts as saturated. Default 0.97, Karpathy's
            rule of thumb for tanh (CS231n).
        in_graph_hook: Optional callable run inside the compiled call, after
            the statistics: `hook(tables, step, first)`, where `tables` is an
            `InGraphTables` (the activation and weight tables as tensors, the
            row paths, and whether every number is finite), `step` the `step`
            of the call as a tensor, and `first` a bool tensor, true on the
            first call of each trace series. The monitor writes its TensorBoard
            scalars there (`callbacks.in_graph_scalars`), at no extra call. What
            it returns, a `HookOutput` or None, comes back in the result
            (`hook_numbers` in the same transfer as the statistics). A hook
            that needs variables of its own has a `before_trace()` attribute
            that makes them: the probe calls it before each trace, outside it
            (a variable made inside a trace makes TensorFlow trace it twice).
            TensorFlow only.
        tensors_of: Optional predicate `layer -> bool`: the layers whose raw
            outputs, and the weights (by owning layer) whose gradients, a call
            `with_tensors` returns. Default: all of them.

    Example:
    >>> result = Probe(model)(x_batch)
    >>> [(row.path, row.stats["std"]) for row in result.activations]
    """

    def __init__(self, model, loss=None, saturation_threshold=0.97, in_graph_hook=None,
                 tensors_of=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must be a keras.Model; received {type(model).__name__}.")
        if not model.built:
            raise ValueError(
                f"The model {model.name!r} is not built; call it on data or build it first.")
        if keras.backend.backend() not in STATELESS_BACKENDS + ("tensorflow",):
            raise ValueError("The probe runs on the TensorFlow, JAX and PyTorch backends; "
                             f"received backend={keras.backend.backend()!r}.")
        if in_graph_hook is not None and keras.backend.backend() != "tensorflow":
            raise ValueError("`in_graph_hook` runs inside TensorFlow's compiled call; received "
                             f"in_graph_hook={in_graph_hook!r} on the "
                             f"{keras.backend.backend()!r} backend.")
        self.model = model
        self.loss = loss
        self.saturation_threshold = float(saturation_threshold)
        self.in_graph_hook = in_graph_hook
        self.tensors_of = tensors_of or (lambda layer: True)
        self._kept = None  # (activation rows, weights) with_tensors returns, set by the trace
        layers = flat_layers(model)
        # A recurrent layer's cell runs once per time step inside the loop: the layer's own
        # output is what is reported.
        cells = {id(c) for layer in layers for c in _cells(getattr(layer, "cell", None))}
        self._layers = [layer for layer in layers if id(layer) not in cells
                        and not isinstance(layer, keras.layers.InputLayer)]
        # The softmax sublayers of attention layers: their outputs are attention probabilities.
        self._attention = {id(sub) for layer in layers
                           if "attention" in type(layer).__name__.lower()
                           for sub in flat_layers(layer)
                           if isinstance(sub, keras.layers.Softmax)}
        self._records = None  # filled while the probe function traces
        self._taps = None  # JAX: record slot -> zeros added to that output (its gradient)
        self._kinds = None  # per row of the last trace: stats.ATTENTION, SEQUENCE or None
        self._hook = None  # the last trace's count of hook numbers, and the hook's `about`
        self._traced = None  # (path, layer, parent) of each recorded call, from the last trace
        self._traced_loss = _NOT_YET  # the loss the traces in `_concrete` compute
        # Input signature -> (concrete function, its _traced): a fixed probe batch traces once,
        # and later calls skip tf.function's argument matching and the wrapping of layer calls.
        self._concrete = {}
        self._last_signature = None  # (x, y, their signatures) of the last call
        self._described = set()  # the trace series whose hook has had its first call
        self._flat = {}  # key of _concrete -> (x, y, the batch's tensors in the flat call)
        self._describe = None  # {False: tensor False, True: tensor True}: the hook's `first`

    def _loss_fn(self):
        """`(y, y_pred) -> scalar`: `loss=`, else the compiled loss and its `loss_weights`."""
        loss = self.loss if self.loss is not None else getattr(self.model, "loss", None)
        if loss is None:
            raise ValueError(
                f"The probe got `y` but the model {self.model.name!r} is not compiled with a "
                "loss; compile it, or pass `loss=` to the probe.")
        names = list(getattr(self.model, "output_names", None) or [])
        weights = None if self.loss is not None else compiled_loss_weights(self.model)

        def weight(i):
            if weights is None:
                return 1.0
            if isinstance(weights, (int, float)):
                return float(weights)
            if isinstance(weights, dict):
                return float(weights.get(names[i], 1.0))
            return float(weights[i])

        def get(data, i):
            if isinstance(data, dict) and i < len(names) and names[i] in data:
                return data[names[i]]
            # A dict keyed otherwise (keras-hub's {"sequence_output", "pooled_output"}):
            # targets and outputs with the same keys flatten in the same (sorted) order.
            return keras.tree.flatten(data)[i]

        if isinstance(loss, dict):  # by output name
            fns = {names.index(n): keras.losses.get(fn) for n, fn in loss.items()}
        elif isinstance(loss, (list, tuple)):
            fns = dict(enumerate(keras.losses.get(fn) for fn in loss))
        else:  # one loss for every output, as Keras applies it
            fns = keras.losses.get(loss)

        def total(y, y_pred):
            per_output = fns if isinstance(fns, dict) else dict.fromkeys(
                range(len(keras.tree.flatten(y_pred))), fns)
            return sum(weight(i) * ops.mean(fn(get(y, i), get(y_pred, i)))
                       for i, fn in per_output.items())

        return total

    def _loss(self, y, y_pred, extra_losses, has_y):
        if has_y:  # the training loss: compiled loss plus regularization losses
            return self._loss_fn()(y, y_pred) + sum(extra_losses)
        loss = 0.0  # a fixed random projection: a unit-scale signal into every output
        for i, out in enumerate(keras.tree.flatten(y_pred)):
            loss = loss + ops.mean(ops.cast(out, "float32") * _direction(out, i))
        return loss

    def _wrap_calls(self):
        originals = {}
        for layer in self._layers:
            original = layer.call

            def recording(*args, _layer=layer, _original=original, **kwargs):
                index = len(self._records)
                self._records.append(None)  # reserve the slot: order of call start
                output = _original(*args, **kwargs)
                if self._taps and index in self._taps:  # JAX: d loss / d tap = d loss / d output
                    output = _add_to_first_float(output, self._taps[index])
                # A merge keeps every input: its row's parent is the stream (`_collect`).
                inputs = _floats(args) if isinstance(_layer, acts.MERGES) else \
                    _first_float(args)
                self._records[index] = (_layer, inputs, output)
                return output

            originals[layer] = original if "call" in vars(layer) else None
            layer.call = recording
        return originals

    def _build(self):
        import tensorflow as tf

        model = self.model

        def step(x, y, has_y, with_tensors, hook_step, first, exact):
            _outside_strategy_scope()
            self._records = []
            # The variables are read inside: captured by handle, they cost a call nothing
            # to pass (20 arguments to bind took a third of a small model's probe).
            trainable = [v.value for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                # And the float inputs: layers before the first weight (padding, rescaling)
                # then have a backward signal too.
                tape.watch([t for t in tf.nest.flatten(x) if t.dtype.is_floating])
                kwargs = {"training": True} if call_takes_training(model) else {}
                y_pred, _, extra_losses = model.stateless_call(
                    trainable, non_trainable, x, return_losses=True, **kwargs)
                loss = self._loss(y, y_pred, extra_losses, has_y)
            graph = tf.compat.v1.get_default_graph()
            # A cell inside a recurrent layer runs in the loop's own graph: skipped.
            traced, tensors, inputs_of = self._collect(
                y_pred, lambda t: getattr(t, "graph", graph) is graph, lambda t: t.ref())
            # One backward pass gives both: the weights' gradients and the gradient with
            # respect to each layer output (the backward signal). An Embedding's gradient
            # comes as IndexedSlices: dense, for the statistics.
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                     for g in tape.gradient(loss, trainable + tensors)]
            grads, output_grads = grads[:len(trainable)], grads[len(trainable):]
            numbers, all_finite, tables = self._tables(
                traced, tensors, inputs_of, trainable, grads, output_grads, loss, exact)
            extra = HookOutput(tf.zeros((0,)))
            if self.in_graph_hook is not None:
                extra = self.in_graph_hook(InGraphTables(
                    *tables[:2], [row[0] for row in self._traced],
                    [v.path for v in model.trainable_variables], all_finite, tables[2]),
                    hook_step, first) or extra
            hook_numbers = tf.reshape(tf.cast(extra.numbers, "float32"), (-1,))
            self._hook = (int(hook_numbers.shape[0]), extra.about)
            numbers = tf.concat([hook_numbers, numbers], 0)  # first in the same transfer
            # Raw values, for histograms: only when asked, they are large.
            kept = self._kept_tensors(tensors, trainable, grads) if with_tensors else ([], [])
            return numbers, *kept, list(extra.tensors)

        return tf.function(step, autograph=False)  # plain Python control flow: no conversion

    def _collect(self, y_pred, ours, key):
        """From the layer calls recorded while the model ran: `(traced, tensors, inputs_of)`,
        one entry per call with a float output that `ours(tensor)` accepts, and
        `self._traced` set. `key(tensor)` identifies a tensor (hashable)."""
        traced, tensors, inputs_of, made_by = [], [], [], {}
        finals = {key(t) for t in keras.tree.flatten(y_pred) if hasattr(t, "shape")}
        for record in self._records:
            if record is None:
                continue
            layer, inputs, output = record
            tensor = _first_float(output)
            if tensor is None or not ours(tensor):
                continue
            if isinstance(inputs, tuple):
                # A merge's stream is the input made first (a model input before any row): a
                # residual branch is computed from it, so Add([branch, x]) reads as Add([x,
                # branch]).
                inputs = min(inputs, key=lambda t: made_by.get(key(t), -1), default=None)
            if inputs is not None and not ours(inputs):
                inputs = None
            parent = made_by.get(key(inputs)) if inputs is not None else None
            made_by[key(tensor)] = len(traced)
            shape = tuple(inputs.shape) if inputs is not None else None
            traced.append((layer, parent, key(tensor) in finals, shape))
            tensors.append(tensor)
            # An input that is another layer's output has its statistics in that row.
            inputs_of.append(inputs if parent is None else None)
        self._traced = _with_paths(traced, layer_paths(self.model))
        return traced, tensors, inputs_of

    def _kept_tensors(self, tensors, trainable, grads):
        """The raw outputs and gradients that `tensors_of` keeps; `self._kept` their rows."""
        owners = _weight_owners(self.model)
        kept = [i for i, (_, layer, *_) in enumerate(self._traced) if self.tensors_of(layer)]
        kept_weights = [i for i, v in enumerate(self.model.trainable_variables)
                        if self.tensors_of(owners.get(id(v)))]
        self._kept = (kept, kept_weights)
        return [tensors[i] for i in kept], [
            grads[i] if grads[i] is not None else ops.zeros_like(trainable[i])
            for i in kept_weights]

    def _tables(self, traced, tensors, inputs_of, trainable, grads, output_grads, loss, exact):
        """The statistics of one pass: `(numbers, all_finite, (rows, weight_rows, kinds))`,
        `numbers` flat (one transfer to the host): the activation table, the weight table,
        the loss and whether every number is finite."""
        bounded = [acts.bounded_name(layer) for layer, *_ in traced]
        live = _live(traced)
        kinds = [self._kind(layer, t, alive)
                 for (layer, *_), t, alive in zip(traced, tensors, live)]
        probs = self._attention_probabilities(traced, tensors, kinds)
        self._kinds = kinds  # fixed with the trace: each row's extra statistics

        def table(rows, fields):  # rows stacked, or an empty (0, fields) table
            return ops.stack(rows) if rows else ops.zeros((0, len(fields)))

        if exact:  # a second pass, only after a NaN or Inf: moments that skip them
            rows = table([stats.activation_stats(*a) for a in zip(
                tensors, bounded, [self.saturation_threshold] * len(tensors), inputs_of,
                output_grads, kinds, probs)], stats.ACTIVATION_FIELDS)
            weight_rows = table([stats.weight_stats(w, g) for w, g in zip(trainable, grads)],
                                stats.WEIGHT_FIELDS)
            all_finite = ops.ones((), "bool")  # these numbers are the ones to keep
        else:
            rows, act_checks = stats.finite_activation_table(
                tensors, bounded, self.saturation_threshold, inputs_of, output_grads, kinds,
                probs)
            weight_rows, weight_checks = stats.finite_weight_stats(trainable, grads)
            checks = [act_checks, weight_checks, ops.reshape(loss, (-1,))]
            all_finite = ops.all(ops.isfinite(ops.concatenate(
                [ops.reshape(ops.cast(c, "float32"), (-1,)) for c in checks])))
        numbers = ops.concatenate([ops.reshape(rows, (-1,)), ops.reshape(weight_rows, (-1,)),
                                   ops.reshape(ops.cast(loss, "float32"), (1,)),
                                   ops.reshape(ops.cast(all_finite, "float32"), (1,))])
        return numbers, all_finite, (rows, weight_rows, kinds)

    def _kind(self, layer, tensor, live):
        """Which extra statistics a layer output gets: attention probabilities (the softmax
        of an attention layer, or a MultiHeadAttention), a sequence of tokens (batch,
        tokens, features) on the way to an output (where rank collapse is judged), or
        none."""
        if (id(layer) in self._attention and len(tensor.shape) >= 3) or \
                isinstance(layer, keras.layers.MultiHeadAttention):
            return stats.ATTENTION
        if live and len(tensor.shape) == 3 and (tensor.shape[1] or 0) >= 2:
            return stats.SEQUENCE
        return None

    def _attention_probabilities(self, traced, tensors, kinds):
        """Per row, the attention probabilities its ATTENTION statistics are of, or None.

        A softmax row is its own. Keras' MultiHeadAttention forms them through
        its softmax sublayer only on its explicit path (dropout, or scores
        asked for); its fused path (`ops.dot_product_attention`) never does.
        Its row then gets softmax(q k^T / sqrt(key_dim)) from the query and key
        projections it recorded, without its mask: the spread of the logits,
        which is what collapses.
        """
        probs = [None] * len(traced)
        softmax_called = {id(layer) for layer, *_ in traced if isinstance(layer,
                                                                           keras.layers.Softmax)}
        for i, (layer, *_) in enumerate(traced):
            if kinds[i] != stats.ATTENTION:
                continue
            if not isinstance(layer, keras.layers.MultiHeadAttention):
                probs[i] = tensors[i]
                continue
            softmax, query, key = attention_parts(layer)
            if id(softmax) in softmax_called:
                kinds[i] = None  # its softmax row holds them
                continue
            later = [(row[0], t) for row, t in zip(traced[i + 1:], tensors[i + 1:])]
            q = next((t for sub, t in later if sub is query), None)
            k = next((t for sub, t in later if sub is key), None)
            if q is None or k is None or len(q.shape) != 4 or len(k.shape) != 4:
                kinds[i] = None
                continue
            scores = ops.einsum("bqnh,bknh->bnqk", ops.cast(q, "float32"),
                                ops.cast(k, "float32")) / float(q.shape[-1]) ** 0.5
            probs[i] = ops.softmax(scores, axis=-1)
        return probs

    def _run(self, args, exact):
        """The compiled probe for these arguments (traced on first use), run: its outputs,
        the numbers on the host, and what the trace recorded."""
        # The variables are captured by the trace: a layer frozen or unfrozen since (or a new
        # variable) needs a new one. The exact variant is traced only when first needed.
        key = (self._last_signature[2], args[3], exact,
               tuple(id(v) for v in self.model.trainable_variables),
               tuple(id(v) for v in self.model.non_trainable_variables))
        series = key[:2] + key[3:]  # the trace's rows (a hook's series): the same for both passes
        describe = self._describe[series not in self._described]
        if key not in self._concrete:
            # Variables the hook needs are made before the trace: one made inside it would
            # make TensorFlow trace the call twice.
            getattr(self.in_graph_hook, "before_trace", lambda: None)()
            originals = self._wrap_calls()
            try:
                # A tf.function of its own: tf.function's cache keys on the arguments
                # alone, and would hand back a trace made for other variables.
                function = self._build().get_concrete_function(*args, describe, exact)
            finally:
                self._unwrap_calls(originals)
            owners = _weight_owners(self.model)  # fixed with the trace: not per call
            weight_names = [(v.path, owners.get(id(v)), tuple(v.shape))
                            for v in self.model.trainable_variables]
            self._concrete[key] = (function, (self._traced, weight_names,
                                              self._kept if args[3] else None,
                                              {"kinds": self._kinds, "hook": self._hook}))
            # Freezing layer after layer (gradual unfreezing) makes a trace per step of it:
            # keep the latest few, so that memory stays flat.
            for old in list(self._concrete)[:-MAX_TRACES]:
                del self._concrete[old]
                self._flat.pop(old, None)
            _warn_if_weights_unseen(self.model, self._traced, owners)
            _warn_if_attention_unseen(self.model, self._traced, self._attention)
        function, recorded = self._concrete[key]
        out = self._call(key, function, args + (describe, exact))
        numbers = np.asarray(out[0])  # the one transfer
        return out, numbers, recorded, series

    def _run_stateless(self, args, exact):
        """`_run` on JAX and PyTorch: `stateless_call` and the backend's own gradient,
        compiled by `jax.jit` on JAX (PyTorch runs eagerly)."""
        x, y, with_tensors = args
        model = self.model
        key = (self._last_signature[2], with_tensors, exact,
               tuple(id(v) for v in model.trainable_variables),
               tuple(id(v) for v in model.non_trainable_variables))
        if key not in self._concrete:
            build = self._jax_numbers if keras.backend.backend() == "jax" else self._torch_numbers
            function = build(y is not None, with_tensors, exact)
            self._concrete[key] = [function, None]
            for old in list(self._concrete)[:-MAX_TRACES]:
                del self._concrete[old]
        entry = self._concrete[key]
        out = entry[0]([v.value for v in model.trainable_variables],
                       [v.value for v in model.non_trainable_variables], x, y)
        if entry[1] is None:  # the first run recorded the layers
            owners = _weight_owners(model)
            weight_names = [(v.path, owners.get(id(v)), tuple(v.shape))
                            for v in model.trainable_variables]
            entry[1] = (self._traced, weight_names, self._kept if with_tensors else None,
                        {"kinds": self._kinds})
            _warn_if_weights_unseen(model, self._traced, owners)
            _warn_if_attention_unseen(model, self._traced, self._attention)
        return out, ops.convert_to_numpy(out[0] if with_tensors else out), entry[1], None

    def _forward(self, trainable, non_trainable, x, y, has_y):
        """The model run statelessly with its layer calls recorded: `(loss, (tensors,
        inputs_of))`, `self._traced` set."""
        self._records = []
        kwargs = {"training": True} if call_takes_training(self.model) else {}
        y_pred, _, extra_losses = self.model.stateless_call(
            trainable, non_trainable, x, return_losses=True, **kwargs)
        loss = self._loss(y, y_pred, extra_losses, has_y)
        _, tensors, inputs_of = self._collect(y_pred, lambda t: True, id)
        return loss, (tensors, inputs_of)

    def _jax_numbers(self, has_y, with_tensors, exact):
        import jax

        def numbers(trainable, non_trainable, x, y):
            # Python here runs only while jax.jit traces: the layer calls are wrapped then.
            originals = self._wrap_calls()
            try:
                return traced_numbers(trainable, non_trainable, x, y)
            finally:
                self._unwrap_calls(originals)

        def traced_numbers(trainable, non_trainable, x, y):
            def forward(trainable, taps):
                self._taps = taps
                try:
                    loss, (tensors, inputs_of) = self._forward(
                        trainable, non_trainable, x, y, has_y)
                finally:
                    self._taps = None
                slot_of = {id(_first_float(r[2])): i for i, r in enumerate(self._records)
                           if r is not None}
                kept.append([slot_of[id(t)] for t in tensors])  # each row's tap
                return loss, (tensors, inputs_of)

            kept = []

            # A first, abstract pass finds the recorded outputs; a zero "tap" added to each
            # then gives the gradient with respect to it (JAX differentiates inputs only).
            jax.eval_shape(lambda t: forward(t, None)[1][0], trainable)
            slots = [i for i, record in enumerate(self._records)
                     if record is not None and _first_float(record[2]) is not None]
            shapes = {i: _first_float(self._records[i][2]) for i in slots}
            taps = {i: jax.numpy.zeros(t.shape, t.dtype) for i, t in shapes.items()}
            (loss, (tensors, inputs_of)), (grads, tap_grads) = jax.value_and_grad(
                forward, argnums=(0, 1), has_aux=True)(trainable, taps)
            output_grads = [tap_grads[i] for i in kept[-1]]
            numbers = self._tables(self._traced_rows(), tensors, inputs_of, trainable, grads,
                                   output_grads, loss, exact)[0]
            if with_tensors:
                return (numbers, *self._kept_tensors(tensors, trainable, grads))
            return numbers

        return jax.jit(numbers)

    def _torch_numbers(self, has_y, with_tensors, exact):
        import torch

        def numbers(trainable, non_trainable, x, y):
            originals = self._wrap_calls()
            try:
                return eager_numbers(trainable, non_trainable, x, y)
            finally:
                self._unwrap_calls(originals)

        def eager_numbers(trainable, non_trainable, x, y):
            # Fresh leaves: the gradient of each, and of every float input (layers before the
            # first weight then have a backward signal too), without touching the variables.
            trainable = [t.detach().requires_grad_(t.is_floating_point()) for t in trainable]
            x = keras.tree.map_structure(lambda t: _torch_leaf(torch, t), x)
            with torch.enable_grad():
                loss, (tensors, inputs_of) = self._forward(trainable, non_trainable, x, y, has_y)
                wanted = trainable + tensors
                needed = [t for t in wanted if t.requires_grad]
                found = iter(torch.autograd.grad(loss, needed, allow_unused=True)
                             if needed else ())
                grads = [next(found) if t.requires_grad else None for t in wanted]
                grads_of_outputs = grads[len(trainable):]
            tensors = [t.detach() for t in tensors]
            trainable, grads = [t.detach() for t in trainable], grads[:len(trainable)]
            with torch.no_grad():
                numbers = self._tables(self._traced_rows(), tensors,
                                       [None if t is None else t.detach() for t in inputs_of],
                                       trainable, grads, grads_of_outputs, loss.detach(),
                                       exact)[0]
                if with_tensors:
                    return (numbers, *self._kept_tensors(tensors, trainable, grads))
            return numbers

        return numbers

    def _traced_rows(self):
        """The `(layer, parent, is_output, shape)` records behind `self._traced`."""
        return [tuple(row[1:]) for row in self._traced]

    def _unwrap_calls(self, originals):
        for layer, original in originals.items():
            if original is None:
                del layer.call  # back to the class's method, no instance attribute left
            else:
                layer.call = original
        self._records = None

    def _call(self, key, function, args):
        """`function(*args)`, on the flat list of its tensors where it can.

        TensorFlow binds the arguments to the function's signature anew on each
        call (70 us of a small MLP's 0.8 ms probe). Its tensors are those of the
        batch (NumPy arrays converted), the step and `describe`: listed once per
        batch, and checked against the function's inputs, else the call goes the
        usual way.
        """
        import tensorflow as tf

        x, y, tensors = args[0], args[1], [args[4], args[5]]
        flat = self._flat.get(key)
        if flat is None or flat[0] is not x or flat[1] is not y:
            leaves = [t for t in tf.nest.flatten((x, y)) if isinstance(t, (tf.Tensor, np.ndarray))]
            batch = [tf.convert_to_tensor(t) for t in leaves]
            expected = function.inputs[:len(function.inputs) - len(function.captured_inputs)]
            usable = flat_call(function) is not None and len(batch) + 2 == len(expected) and all(
                t.dtype == e.dtype and e.shape.is_compatible_with(t.shape)
                for t, e in zip(batch + tensors, expected))
            # NumPy arrays are converted anew on each call: they may change in place.
            fixed = all(isinstance(t, tf.Tensor) for t in leaves)
            flat = self._flat[key] = (x, y, batch if usable else None, fixed)
        elif flat[2] is not None and not flat[3]:
            flat = (x, y, [tf.convert_to_tensor(t) for t in tf.nest.flatten((x, y))
                           if isinstance(t, (tf.Tensor, np.ndarray))], False)
        if flat[2] is None:
            return function(*args)
        return flat_call(function)(flat[2] + tensors)

    def __call__(self, x, y=None, with_tensors=False, step=0):
        """Runs the probe on one batch `x` (and targets `y`); returns a `ProbeResult`.

        With `with_tensors`, the result also holds `activation_tensors` and
        `gradient_tensors`: `(path, device tensor)` pairs, in the order of
        `activations` and `weights`, for the layers `tensors_of` keeps (for
        histograms). `step` is the step handed to the
        `in_graph_hook`, when the probe has one.
        """
        loss_now = self.loss if self.loss is not None else getattr(self.model, "loss", None)
        if self._traced_loss is not loss_now:  # compile() again: every trace is stale
            self._traced_loss = loss_now
            self._concrete, self._described, self._flat = {}, set(), {}
        # The same batch objects as last time (a monitor's fixed probe batch): the same
        # signature, without walking their structure again.
        if self._last_signature is None or self._last_signature[0] is not x or \
                self._last_signature[1] is not y:
            self._last_signature = (x, y, (_signature(x), _signature(y)))
        if keras.backend.backend() in STATELESS_BACKENDS:
            run, args = self._run_stateless, (x, y, bool(with_tensors))
        else:
            import tensorflow as tf

            if self._describe is None:
                self._describe = {flag: tf.constant(flag) for flag in (False, True)}
            run, args = self._run, (x, y if y is not None else 0.0, y is not None, with_tensors,
                                    tf.constant(step, tf.int64))
        out, numbers, (traced, weight_names, kept, shared), series = run(args, exact=False)
        if not numbers[-1]:  # a NaN or Inf made the cheap moments wrong: the exact pass
            out, numbers, (traced, weight_names, kept, shared), series = run(args, exact=True)
        if self.in_graph_hook is not None:  # the pass kept was this series' first, if any
            self._described.add(series)
        hook_numbers, numbers = np.split(numbers, [shared.get("hook", (0,))[0]])
        numbers = numbers[:-1]
        fields = stats.ACTIVATION_FIELDS
        act = numbers[:len(traced) * len(fields)].reshape(len(traced), len(fields))
        weights = numbers[len(traced) * len(fields):-1].reshape(-1, len(stats.WEIGHT_FIELDS))
        activations = []
        for (path, layer, parent, is_output, shape), row in zip(traced, act.tolist()):
            s = dict(zip(fields, row))
            if parent is not None:  # the input is that layer's output: its numbers
                source = activations[parent].stats
                s["input_std"], s["input_rms"] = source["std"], source["rms"]
                s["input_token_cosine"] = source["token_cosine"]
                s["input_nonfinite_count"] = source["nan_count"] + source["inf_count"]
            activations.append(LayerRow(path, layer, s, parent, is_output, shape))
        weight_rows = [WeightRow(path, owner, dict(zip(stats.WEIGHT_FIELDS, row)), shape)
                       for (path, owner, shape), row in zip(weight_names, weights.tolist())]
        result = ProbeResult(activations, weight_rows, float(numbers[-1]), shared)
        result.samples = _batch_size(x)
        result.hook_numbers = hook_numbers
        if "hook" in shared:  # TensorFlow's compiled call
            result.hook_tensors = out[3]
        if with_tensors:
            result.activation_tensors = [(traced[i][0], t) for i, t in zip(kept[0], out[1])]
            result.gradient_tensors = [(weight_names[i][0], t) for i, t in zip(kept[1], out[2])]
        return result


def _outside_strategy_scope():
    """Traces the probe as if outside any `tf.distribute` strategy scope.

    Inside one, a Keras loss divides its mean by the number of replicas (each
    replica's share of an all-reduced sum) and a distributed variable cannot
    be read by handle in the cross-replica context. The probe runs on one
    device on the whole batch, so neither applies. The function graph holds
    its own copy of the strategy stack while it traces (TensorFlow restores
    it after): emptying it there changes nothing outside, and nothing at run
    time.
    """
    import tensorflow as tf

    clear_strategy_stack(tf.compat.v1.get_default_graph())


def _torch_leaf(torch, value):
    """A float input as a tensor that asks for its gradient; anything else as it is."""
    tensor = keras.ops.convert_to_tensor(value) if hasattr(value, "shape") else value
    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
        return tensor.detach().requires_grad_(True)
    return tensor


def _direction(out, i):
    """The surrogate loss's fixed standard-normal direction for output `i`: drawn by NumPy
    when the shape is known, so that every backend probes along the same one."""
    shape = tuple(out.shape)
    if all(isinstance(n, int) for n in shape):
        draw = np.random.default_rng(_SURROGATE_SEED + i).standard_normal(shape)
        return ops.convert_to_tensor(draw.astype("float32"))
    return keras.random.normal(ops.shape(out), seed=_SURROGATE_SEED + i)


def _add_to_first_float(output, tap):
    """`output` with `tap` added to its first float tensor (the one a row reports)."""
    first = _first_float(output)
    if first is None:
        return output
    flat = keras.tree.flatten(output)
    flat = [t + ops.cast(tap, t.dtype) if t is first else t for t in flat]
    return keras.tree.pack_sequence_as(output, flat)


def _signature(data):
    """What a traced function depends on: the structure, shapes and dtypes of `data`."""
    if data is None:
        return None
    return repr(keras.tree.map_structure(
        lambda t: (tuple(getattr(t, "shape", ())), str(getattr(t, "dtype", type(t).__name__))),
        data))


def _live(traced):
    """Per record `(layer, parent, is_output, ...)`: `live_rows` of the trace."""
    return live_rows([parent for _, parent, *_ in traced],
                     [is_output for _, _, is_output, *_ in traced])


def live_rows(parents, outputs):
    """Per row: does its output reach a model output through first inputs (`parents` holds
    each row's parent index or None, `outputs` whether it is a model output)? When no
    output was recorded (the model casts or rebuilds its outputs), every row counts."""
    live = [bool(is_output) for is_output in outputs]
    if not any(live):
        return [True] * len(live)
    for i in reversed(range(len(live))):
        if live[i] and parents[i] is not None:
            live[parents[i]] = True
    return live


def _with_paths(traced, path_of):
    """`(layer, ...)` records -> `(path, layer, ...)`, numbering repeated calls of a shared
    layer."""
    out, seen = [], {}
    for layer, *rest in traced:
        path = path_of(layer)
        seen[path] = seen.get(path, 0) + 1
        out.append((path + (f" (call {seen[path]})" if seen[path] > 1 else ""), layer, *rest))
    return out


def _warn_if_weights_unseen(model, traced, owners):
    """Warns once when weights are used outside every layer call the probe saw.

    A subclassed model that applies its own variables with raw ops has no
    layer output there: the weights and gradients are still reported, but the
    activation statistics cover only the layers that were reached.
    """
    reached = set()
    for _, layer, *_ in traced:  # a reached layer covers its sublayers (an RNN's cell)
        reached.update(id(sub) for sub in flat_layers(layer, include_self=True))
    unseen = [v.path for v in model.trainable_variables if id(owners.get(id(v))) not in reached]
    if unseen:
        shown = ", ".join(unseen[:4]) + (f" and {len(unseen) - 4} more" if len(unseen) > 4 else "")
        warn_once(f"Model {model.name!r} uses {len(unseen)} weight(s) outside any layer call the "
                  f"probe can see ({shown}): their gradients are reported, but activation "
                  "statistics are limited to the layers it reached. Wrap raw ops in "
                  "keras.layers to see their outputs.")


def _warn_if_attention_unseen(model, traced, attention_softmax):
    """Warns once when an attention layer's probabilities cannot be reached.

    They are read from a `Softmax` sublayer of an attention layer, or, for a
    `MultiHeadAttention`, computed from its query and key projections. Any
    other layer named for attention that forms them with raw ops gets no
    `entropy_collapse` verdict.
    """
    called = {id(layer) for _, layer, *_ in traced}
    unseen = []
    for _, layer, *_ in traced:
        if "attention" not in type(layer).__name__.lower() or isinstance(
                layer, (keras.layers.MultiHeadAttention, keras.layers.Softmax)):
            continue
        inner = flat_layers(layer)
        subs = {id(sub) for sub in inner}
        inner_attention = any("attention" in type(sub).__name__.lower() for sub in inner)
        if not (subs & attention_softmax & called) and not inner_attention:
            unseen.append(layer.name)
    if unseen:
        names = ", ".join(sorted(set(unseen))[:4])
        warn_once(f"Model {model.name!r}: the attention probabilities of {names} are formed "
                  "with raw ops, not a keras.layers.Softmax sublayer, so the probe cannot "
                  "read them: no entropy_collapse verdict for them.")


def _cells(cell):
    if cell is None:
        return []
    return [cell] + [c for inner in getattr(cell, "cells", []) for c in _cells(inner)]


def layer_path(layer):
    """The layer's unique path in its model ("outer/inner/dense"); its name if it has none."""
    return getattr(layer, "path", None) or layer.name


def layer_paths(model):
    """`layer -> path` for the layers of `model`, nested ones included.

    Keras gives a layer its path with its first weight. A layer without
    weights (an activation, dropout, pooling) has none, and its bare name may
    repeat in two nested models: it gets the path of the model that holds it
    and its name ("outer/block_2/relu").
    """
    paths = {}

    def walk(container, prefix):
        for layer in flat_layers(container, recursive=False):
            if id(layer) not in paths:
                paths[id(layer)] = getattr(layer, "path", None) or f"{prefix}/{layer.name}"
                walk(layer, paths[id(layer)])

    walk(model, getattr(model, "path", None) or model.name)
    return lambda layer: paths.get(id(layer)) or layer_path(layer)


def _weight_owners(model):
    """id(variable) -> the innermost layer that owns it."""
    owners = {}
    for layer in flat_layers(model):
        for variable in layer.trainable_variables:
            owners[id(variable)] = layer  # inner layers come later and win
    return owners


def warn_once(message, _seen=set()):
    if message not in _seen:
        _seen.add(message)
        warnings.warn(message, stacklevel=3)
