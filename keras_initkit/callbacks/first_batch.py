"""The first batch a `fit` call trains on, handed to a callback before its step runs."""
import collections.abc
import itertools
import warnings

import keras


def on_first_batch(model, receive):
    """Has the next call of `model.train_function` hand `receive(x, y)` the first batch it
    trains on, before its step runs; the step then trains on the same batches, in the
    same order, as it would have.

    Keras hands callbacks no data, but `fit` hands each backend's train function (set by
    `make_train_function` before `on_train_begin`) the data of each call: PyTorch a list
    of its one batch, JAX `(state, iterator)`, TensorFlow a `tf.data` (or
    `tf.distribute`) iterator, in Keras 3.10 to 3.15. The first batch is taken from it,
    and the rest of the call gets an iterator that yields that batch first: on
    TensorFlow a `tf.data` iterator with the same element spec (no new trace of the
    step), or with `steps_per_execution > 1` and on a distributed iterator a Python one
    (Keras' path of `train_on_batch`: the step is traced once more). Nothing moves a
    shuffle's seed: it is the batch training takes.

    Args:
        model: The model being fit, between `make_train_function` and its first step.
        receive: Called with `(x, y)` (`y` None for data without targets) once, before
            the first step; its own errors are its own to handle.

    Returns:
        A function of no arguments that puts the train function back if it has not been
        called (a fit of no steps), so that a later fit does not hand its batch over.
    """
    original = model.train_function
    take = {"tensorflow": _take_tensorflow, "jax": _take_jax, "torch": _take_torch}.get(
        keras.backend.backend())

    def first_call(*args):
        model.train_function = original  # this call only
        taken = take(model, *args) if take is not None else None
        if taken is None:  # arguments of another kind: nothing taken, nothing changed
            warnings.warn("The first training batch could not be taken from this Keras' "
                          f"train function ({keras.backend.backend()} backend, "
                          f"{len(args)} arguments); pass probe_data=x_batch or "
                          "(x_batch, y_batch).", stacklevel=2)
            return original(*args)
        data, args = taken
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        receive(x, y)
        return original(*args)

    model.train_function = first_call

    def cancel():
        if model.train_function is first_call:
            model.train_function = original

    return cancel


# Each gives `(batch, the call's arguments)`, or None, before taking anything, for arguments
# that are not what Keras 3.10 to 3.15 pass.


def _take_tensorflow(model, *args):
    import tensorflow as tf

    if len(args) != 1 or not isinstance(args[0], (tf.data.Iterator,
                                                 tf.distribute.DistributedIterator)):
        return None
    iterator = args[0]
    if isinstance(iterator, tf.data.Iterator) and model.steps_per_execution == 1:
        held = []  # the batch, yielded by an iterator of the same spec: the trace is reused
        again = iter(tf.data.Dataset.from_generator(lambda: iter(held),
                                                    output_signature=iterator.element_spec))
        held.append(iterator.get_next())
        return held[0], (again,)
    data = next(iterator)
    strategy = model.distribute_strategy
    # A distributed batch is one slice per replica, in order: the probe gets them all.
    whole = tf.nest.map_structure(
        lambda v: tf.concat(strategy.experimental_local_results(v), 0)
        if isinstance(v, tf.distribute.DistributedValues) else v, data)
    return whole, (itertools.chain([data], iterator),)


def _take_jax(model, *args):
    """JAX's `fit` takes the training state out of the variables (and empties them) before
    the first step: they are given it back, so that the probe of this step reads it."""
    if len(args) != 2 or not isinstance(args[1], collections.abc.Iterator) or len(
            args[0]) < 3:
        return None
    state, iterator = args
    data = next(iterator)
    trainable, non_trainable, optimizer_variables = state[:3]
    for variables, values in ((model.trainable_variables, trainable),
                              (model.non_trainable_variables, non_trainable),
                              (model.optimizer.variables if model.optimizer else [],
                               optimizer_variables)):
        for variable, value in zip(variables, values):
            variable.assign(value)
    return data, (state, itertools.chain([data], iterator))


def _take_torch(model, *args):
    if len(args) != 1 or not isinstance(args[0], (list, tuple)) or len(args[0]) != 1:
        return None
    return args[0][0], args  # the steps of one call (one: PyTorch's steps_per_execution)
