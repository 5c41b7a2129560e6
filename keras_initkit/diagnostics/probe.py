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
"""
import warnings

import keras
import numpy as np
from keras import ops

from . import stats

_SURROGATE_SEED = 1234


class ProbeResult:
    """The numbers of one probe, on the host.

    Attributes:
        activations: list of `(path, layer, dict)` in the order the layers ran;
            the dict maps each of `stats.ACTIVATION_FIELDS` to a float, and
            `parent` to the index of the entry whose output the layer read
            (None for a model input).
        weights: list of `(path, layer, dict)` for every trainable weight (the
            layer that owns it, or None);
            the dict maps each of `stats.WEIGHT_FIELDS` to a float.
        loss: the loss the gradients are of.
    """

    def __init__(self, activations, weights, loss):
        self.activations, self.weights, self.loss = activations, weights, loss


def _bounded_name(layer):
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", "")
    return name if name in stats.BOUNDED else None


def _first_float(output):
    for tensor in keras.tree.flatten(output):
        if hasattr(tensor, "dtype") and keras.backend.is_float_dtype(
                keras.backend.standardize_dtype(tensor.dtype)) and len(tensor.shape) >= 1:
            return tensor
    return None


class Probe:
    """Activation and gradient statistics of a built Keras model, one batch at a time.

    Args:
        model: A built Keras model (TensorFlow backend).
        loss: Optional loss (name, `keras.losses.Loss` or callable
            `loss(y_true, y_pred)`) used when `y` is given. Default: the loss
            the model was compiled with.
        saturation_threshold: |value| mapped onto [-1, 1] above which a
            bounded activation counts as saturated. Default 0.97, Karpathy's
            rule of thumb for tanh (CS231n).

    Example:
    >>> result = Probe(model)(x_batch)
    >>> [(path, s["std"]) for path, _, s in result.activations]
    """

    def __init__(self, model, loss=None, saturation_threshold=0.97):
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must be a keras.Model; received {type(model).__name__}.")
        if not model.built:
            raise ValueError(
                f"The model {model.name!r} is not built; call it on data or build it first.")
        if keras.backend.backend() != "tensorflow":
            raise ValueError("The probe needs the TensorFlow backend; received backend="
                             f"{keras.backend.backend()!r}.")
        self.model = model
        self.loss = loss
        self.saturation_threshold = float(saturation_threshold)
        layers = list(model._flatten_layers(include_self=False, recursive=True))
        # A recurrent layer's cell runs once per time step inside the loop: the layer's own
        # output is what is reported.
        cells = {id(c) for layer in layers for c in _cells(getattr(layer, "cell", None))}
        self._layers = [layer for layer in layers if id(layer) not in cells
                        and not isinstance(layer, keras.layers.InputLayer)]
        self._records = None  # filled while the probe function traces
        self._traced = None  # (path, layer) of each recorded call, from the last trace
        self._function = self._traced_loss = None

    def _loss_fn(self):
        """`(y, y_pred) -> scalar`: `loss=`, else the compiled loss and its `loss_weights`."""
        loss = self.loss if self.loss is not None else getattr(self.model, "loss", None)
        if loss is None:
            raise ValueError(
                f"The probe got `y` but the model {self.model.name!r} is not compiled with a "
                "loss; compile it, or pass `loss=` to the probe.")
        names = list(getattr(self.model, "output_names", None) or [])
        weights = None if self.loss is not None else getattr(
            getattr(self.model, "_compile_loss", None), "_user_loss_weights", None)

        def weight(i):
            if weights is None:
                return 1.0
            if isinstance(weights, (int, float)):
                return float(weights)
            if isinstance(weights, dict):
                return float(weights.get(names[i], 1.0))
            return float(weights[i])

        def get(data, i):
            if isinstance(data, dict):
                return data[names[i]]
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

    def _wrap_calls(self):
        originals = {}
        for layer in self._layers:
            original = layer.call

            def recording(*args, _layer=layer, _original=original, **kwargs):
                index = len(self._records)
                self._records.append(None)  # reserve the slot: order of call start
                output = _original(*args, **kwargs)
                self._records[index] = (_layer, _first_float(args), output)
                return output

            originals[layer] = original if "call" in vars(layer) else None
            layer.call = recording
        return originals

    def _build(self):
        import tensorflow as tf

        model = self.model

        def step(trainable, non_trainable, x, y, has_y, with_tensors):
            self._records = []
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                kwargs = {"training": True} if model._call_has_training_arg else {}
                y_pred, _, extra_losses = model.stateless_call(
                    trainable, non_trainable, x, return_losses=True, **kwargs)
                if has_y:  # the training loss: compiled loss plus regularization losses
                    loss = self._loss_fn()(y, y_pred) + sum(extra_losses)
                else:  # a fixed random projection: a unit-scale signal into every output
                    loss = 0.0
                    for i, out in enumerate(keras.tree.flatten(y_pred)):
                        direction = keras.random.normal(ops.shape(out), seed=_SURROGATE_SEED + i)
                        loss = loss + ops.mean(ops.cast(out, "float32") * direction)
            grads = tape.gradient(loss, trainable)
            graph = tf.compat.v1.get_default_graph()
            rows, traced, tensors, parents, made_by = [], [], [], [], {}
            for record in self._records:
                if record is None:
                    continue
                layer, inputs, output = record
                tensor = _first_float(output)
                # A cell inside a recurrent layer runs in the loop's own graph: skip it.
                if tensor is None or getattr(tensor, "graph", graph) is not graph:
                    continue
                if inputs is not None and getattr(inputs, "graph", graph) is not graph:
                    inputs = None
                parents.append(made_by.get(inputs.ref()) if inputs is not None else None)
                made_by[tensor.ref()] = len(traced)
                traced.append(layer)
                tensors.append(tensor)
                rows.append(stats.activation_stats(tensor, _bounded_name(layer),
                                                   self.saturation_threshold, inputs))
            self._traced, self._parents = traced, parents
            weight_rows = [stats.weight_stats(w, g) for w, g in zip(trainable, grads)]
            # Everything in one flat tensor: one transfer to the host.
            numbers = ops.concatenate([ops.reshape(ops.stack(rows), (-1,)) if rows else
                                       ops.zeros((0,)),
                                       ops.reshape(ops.stack(weight_rows), (-1,)) if weight_rows
                                       else ops.zeros((0,)),
                                       ops.reshape(ops.cast(loss, "float32"), (1,))])
            if with_tensors:  # raw values, for histograms: only when asked, they are large
                return numbers, tensors, [g if g is not None else ops.zeros_like(w)
                                          for w, g in zip(trainable, grads)]
            return numbers

        return tf.function(step, reduce_retracing=True)

    def __call__(self, x, y=None, with_tensors=False):
        """Runs the probe on one batch `x` (and targets `y`); returns a `ProbeResult`.

        With `with_tensors`, the result also holds `activation_tensors` and
        `gradient_tensors` (device tensors, in the order of `activations` and
        `weights`) for histograms.
        """
        loss_now = self.loss if self.loss is not None else getattr(self.model, "loss", None)
        if self._function is None or self._traced_loss is not loss_now:  # compile() again
            self._function, self._traced_loss = self._build(), loss_now
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        originals = self._wrap_calls()
        try:
            out = self._function(trainable, non_trainable, x, y if y is not None else 0.0,
                                 y is not None, with_tensors)
        finally:
            for layer, original in originals.items():
                if original is None:
                    del layer.call  # back to the class's method, no instance attribute left
                else:
                    layer.call = original
            self._records = None
        numbers = np.asarray(out[0] if with_tensors else out)  # the one transfer
        n_act = len(self._traced) * len(stats.ACTIVATION_FIELDS)
        act = numbers[:n_act].reshape(len(self._traced), len(stats.ACTIVATION_FIELDS))
        weights = numbers[n_act:-1].reshape(-1, len(stats.WEIGHT_FIELDS))
        loss = numbers[-1]
        paths, seen = [], {}
        for layer in self._traced:
            path = layer_path(layer)
            seen[path] = seen.get(path, 0) + 1
            suffix = f" (call {seen[path]})" if seen[path] > 1 else ""
            paths.append((path + suffix, layer))
        activations = [(path, layer, dict(zip(stats.ACTIVATION_FIELDS, map(float, row))))
                       for (path, layer), row in zip(paths, act)]
        for (_, _, row), parent in zip(activations, self._parents):
            row["parent"] = parent  # index of the record whose output this layer read, or None
        owners = _weight_owners(self.model)
        weight_rows = [(v.path, owners.get(id(v)), dict(zip(stats.WEIGHT_FIELDS, map(float, row))))
                       for v, row in zip(self.model.trainable_variables, weights)]
        result = ProbeResult(activations, weight_rows, float(loss))
        if with_tensors:
            result.activation_tensors, result.gradient_tensors = out[1], out[2]
        return result


def _cells(cell):
    if cell is None:
        return []
    return [cell] + [c for inner in getattr(cell, "cells", []) for c in _cells(inner)]


def layer_path(layer):
    """The layer's unique path in its model ("outer/inner/dense"); its name if it has none."""
    return getattr(layer, "path", None) or layer.name


def _weight_owners(model):
    """id(variable) -> the innermost layer that owns it."""
    owners = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in layer.trainable_variables:
            owners[id(variable)] = layer  # inner layers come later and win
    return owners


def warn_once(message, _seen=set()):
    if message not in _seen:
        _seen.add(message)
        warnings.warn(message, stacklevel=3)
