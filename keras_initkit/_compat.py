"""Every use of a private Keras or TensorFlow name, in one place.

Keras and TensorFlow keep the names used here private, so a release may rename any of them.
Each function does one thing, falls back to the public API where there is one (slower, or
knowing less: each says what is lost), and tests/test_compat.py runs it against the installed
Keras, with the private name and without it. Nothing else in keras_initkit imports
`keras.src` or `tensorflow.python`, or reads an underscore attribute of a Keras or TensorFlow
object; tests/test_compat.py greps the package to keep it so.
"""
import contextlib
import inspect

import keras


def flat_layers(layer, *, include_self=False, recursive=True):
    """The layers inside `layer`, depth first, each once (itself first if `include_self`);
    with `recursive=False`, only its direct sublayers.

    Keras' own walk (`_flatten_layers`) sees every layer an attribute tracks; without it, a
    model's `layers` and the layers held in a layer's attributes (lists, tuples, dicts)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=include_self, recursive=recursive))
    return _public_flat_layers(layer, include_self=include_self, recursive=recursive)


def _public_flat_layers(layer, *, include_self, recursive):
    found, seen = [], {id(layer)}

    def visit(current):
        for child in _direct_sublayers(current):
            if id(child) not in seen:
                seen.add(id(child))
                found.append(child)
                if recursive:
                    visit(child)

    visit(layer)
    return [layer] + found if include_self else found


def _direct_sublayers(layer):
    if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
        return list(layer.layers)
    children = []
    for value in vars(layer).values():
        values = value.values() if isinstance(value, dict) else \
            value if isinstance(value, (list, tuple)) else [value]
        children += [v for v in values if isinstance(v, keras.layers.Layer)]
    return children


def own_variables(layer):
    """The variables `layer` creates itself, not those of its sublayers: trainable first,
    each in the order it was created (the order Keras saves them in)."""
    try:
        return list(layer._trainable_variables) + list(layer._non_trainable_variables)
    except AttributeError:
        return _public_own_variables(layer)


def _public_own_variables(layer):
    inner = {id(v) for sub in flat_layers(layer) for v in sub.weights}
    return [v for v in layer.weights if id(v) not in inner]


def inbound_nodes(layer):
    """The nodes where `layer` is called in a Functional graph (each has `.parent_nodes` and
    `.operation`); without Keras' private list, none (the caller then sees no graph)."""
    return list(getattr(layer, "_inbound_nodes", None) or [])


def outbound_nodes(layer):
    """The nodes that consume `layer`'s output in a Functional graph; as `inbound_nodes`."""
    return list(getattr(layer, "_outbound_nodes", None) or [])


def compiled_loss_weights(model):
    """The `loss_weights` given to `model.compile`, or None (none given, or not found)."""
    return getattr(getattr(model, "_compile_loss", None), "_user_loss_weights", None)


def learning_rate_schedule(optimizer):
    """The optimizer's `LearningRateSchedule` object, None where it has none (a float, or a
    plain callable). Keras keeps it in `_learning_rate`: its public `learning_rate` is the
    rate at the current step, and its config holds only what Keras can deserialize (a
    user's unregistered schedule fails there)."""
    schedules = keras.optimizers.schedules
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, schedules.LearningRateSchedule):
        return schedule
    config = optimizer.get_config().get("learning_rate")
    return schedules.deserialize(config) if isinstance(config, dict) else None


def call_takes_training(model):
    """Whether `model.call` takes a `training` argument."""
    known = getattr(model, "_call_has_training_arg", None)
    if known is not None:
        return bool(known)
    return _public_call_takes_training(model)


def _public_call_takes_training(model):
    return "training" in inspect.signature(model.call).parameters


def attention_parts(layer):
    """`(softmax, query_dense, key_dense)` sublayers of a `MultiHeadAttention`; None for
    each that is not found (the caller then reads the attention another way, or not)."""
    return tuple(getattr(layer, name, None) for name in ("_softmax", "_query_dense",
                                                          "_key_dense"))


def flat_call(function):
    """A `ConcreteFunction` called with its flat tensor inputs, skipping the matching of
    nested arguments (a third of a small model's probe); None where TensorFlow has no such
    call (the caller calls the function as usual)."""
    call = getattr(function, "_call_flat", None)
    if call is None:
        return None
    return lambda tensors: call(tensors, function.captured_inputs)


def flat_function(function):
    """`function`, of no arguments, compiled by TensorFlow once, and called flat: each call
    binds nothing (binding 20 arguments cost 1.5 ms a call). Returns the list of its
    output tensors ([] when it returns none)."""
    import tensorflow as tf

    concrete = tf.function(function, autograph=False).get_concrete_function()
    call = flat_call(concrete)

    def flat():
        out = call([]) if call is not None else concrete()
        if out is None:
            return []
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return flat


def clear_strategy_stack(graph):
    """Empties the distribution-strategy stack a function graph holds while it traces, so a
    probe traced inside a replica context runs on the whole batch (probe.py says why)."""
    if getattr(graph, "_distribution_strategy_stack", None):
        graph._distribution_strategy_stack = []


def in_multi_worker_mode(strategy):
    """Whether a `tf.distribute` strategy spans several worker processes; without
    TensorFlow's private test, whether its cluster has more than one worker task."""
    test = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    if test is not None:
        return bool(test())
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return sum(len(spec.get(job, ())) for job in ("chief", "worker")) > 1


def safe_mode(enabled=True):
    """Keras' safe-mode scope, which an outer `load_model(safe_mode=False)` cannot leak
    into; without it, a no-op (`load_model(..., safe_mode=True)` still applies)."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        return contextlib.nullcontext()
    return SafeModeScope(enabled)


def saving_children(layer):
    """`(attribute, child)` pairs in the order Keras' saving walks a layer, so that a
    model's layers are listed as its `.weights.h5` file lists them; without Keras' walk,
    a model's `layers` or a layer's direct sublayers, under "layers"."""
    try:
        from keras.src.saving.saving_lib import _walk_saveable
    except ImportError:
        return [("layers", flat_layers(layer, recursive=False))]
    return list(_walk_saveable(layer))


def saveable_type():
    """The base class of what Keras' saving walks into (layers, optimizers, ...)."""
    try:
        from keras.src.saving.keras_saveable import KerasSaveable
    except ImportError:
        return keras.layers.Layer
    return KerasSaveable


def name_scope_path():
    """The name scope Keras is in now ("" at top level): a layer's `build` runs inside its
    own, which prefixes the path of every variable made there. Without Keras' reader, the
    path of a throwaway variable tells the same."""
    try:
        from keras.src.backend.common.name_scope import current_path
    except ImportError:
        return keras.Variable(0.0, name="probe", trainable=False).path.rpartition("/")[0]
    return current_path()
