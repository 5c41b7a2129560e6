"""How far each weight moved between two probes of `SignalMonitor`: the update ratios."""
import keras
import numpy as np

from .._compat import flat_call
from ..diagnostics.findings import WeightUpdate


def _owner(path):
    return path.rsplit("/", 2)[-2] if "/" in path else path


class WeightUpdates:
    """Keeps a copy of the watched weights at each probe (on their device), and gives each
    one's mean relative update per step since the last probe.

    Watched: every trainable weight, and every non-trainable one of rank >= 2 (a kernel
    of a frozen layer; normalization statistics and seed states are rank 1). The copy
    costs one copy of those weights in device memory.
    """

    def __init__(self):
        self.step = self.paths = self._measure = None

    def forget(self):
        """The weights jumped (a restore): the next probe starts a new baseline."""
        self.step = None

    def __call__(self, model, step):
        """`WeightUpdate`s since the last call (none at the first, or where no step was
        taken), and keeps this step's copy."""
        weights = [w for w in model.weights
                   if w.trainable or (len(w.shape) >= 2 and "float" in str(w.dtype))]
        paths = [w.path for w in weights]
        if self._measure is None or self.paths != paths:  # compiled once per set of weights
            self._measure, self.paths = _measurer(weights), paths
            self.step = step
            return []
        if self.step is None or step <= self.step:  # a new baseline: the copy is refreshed
            self._measure()
            self.step = step
            return []
        # One compiled call and one transfer for all: eager, 10 weights took 9 ms.
        squares = self._measure()
        squares = keras.ops.convert_to_numpy(squares).astype(np.float64)
        steps, self.step = step - self.step, step
        updates = []
        for w, (moved, base) in zip(weights, squares):
            ratio = float(np.sqrt(moved / base) / steps) if base > 0 else float("nan")
            # NaN moved: a diverged weight, not a frozen one.
            updates.append(WeightUpdate(w.path, _owner(w.path), ratio, bool(moved != 0),
                                        bool(w.trainable), len(w.shape) >= 2, steps))
        return updates


def _measurer(weights):
    """A function of no arguments that gives, per weight, the squared norms of its change
    since its last call and of its value then (`(n, 2)`), and keeps the new value; compiled
    where the backend compiles."""
    ops = keras.ops
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # The copies are variables the compiled call reads and assigns: no arguments to
        # bind on each call (binding 20 tensors cost 1.5 ms a probe).
        copies = [tf.Variable(tf.cast(w.value, "float32"), trainable=False) for w in weights]

        def measure():
            now = [tf.cast(w.value, "float32") for w in weights]
            squares = _squares(now, copies)
            with tf.control_dependencies([squares]):
                for copy, value in zip(copies, now):
                    copy.assign(value)
            return tf.identity(squares)

        function = tf.function(measure, autograph=False).get_concrete_function()
        call = flat_call(function)
        if call is None:
            return function

        def flat_measure():
            out = call([])  # the one output as it is, or in a list (TensorFlow releases differ)
            return out[0] if isinstance(out, (list, tuple)) else out

        return flat_measure
    state = {"before": [ops.copy(ops.cast(w.value, "float32")) for w in weights]}

    def step(values, before):
        now = [ops.cast(v, "float32") for v in values]
        return _squares(now, before), [ops.copy(n) for n in now]

    if backend == "jax":
        import jax

        step = jax.jit(step)

    def measure():  # PyTorch runs eagerly
        squares, state["before"] = step([w.value for w in weights], state["before"])
        return squares

    return measure


def _squares(now, before):
    ops = keras.ops
    return ops.stack([ops.stack([ops.sum(ops.square(n - b)), ops.sum(ops.square(b))])
                      for n, b in zip(now, before)])
