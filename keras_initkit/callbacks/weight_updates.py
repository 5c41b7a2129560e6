"""How far each weight moved between two probes of `SignalMonitor`: the update ratios."""
import math
import typing

import keras
import numpy as np

from ..diagnostics.findings import WeightUpdate
from ..diagnostics.probe import MAX_TRACES
from ..diagnostics.stats import sum_of_squares
from ..fans import compute_fans


def _owner(path):
    return path.rsplit("/", 2)[-2] if "/" in path else path


def watched(model):
    """Every trainable weight, and every non-trainable float one of rank >= 2 (a kernel of a
    frozen layer; normalization statistics and seed states are rank 1)."""
    return [w for w in model.weights
            if w.trainable or (len(w.shape) >= 2 and "float" in str(w.dtype))]


def update_tag(path):
    return f"weight/{path}/update_ratio"


class WeightUpdates:
    """Keeps a copy of the watched weights (`watched`) at each probe, on their device, and
    gives each one's mean relative update per step since the last probe. The copy costs
    one copy of those weights in device memory.

    On TensorFlow the ratios are computed inside the probe's own compiled call
    (`in_graph`, the monitor's in-graph hook) and written with its scalars; on JAX
    and PyTorch by one compiled (JAX) or eager (PyTorch) call after the probe.
    """

    def __init__(self):
        self.step = self.paths = self._measure = None
        self._copies = {}  # TensorFlow: the watched paths -> their _GraphCopy

    def forget(self):
        """The weights jumped (a restore): the next probe starts a new baseline."""
        self.step = None
        for copy in self._copies.values():
            copy.last_step.assign(-1)

    def in_graph(self, model, keep):
        """Inside TensorFlow's compiled probe: `(tags, ratios, described, measured, facts)`,
        the update ratios since the last probe (NaN where there is no baseline), whether a
        finite one was kept before (TensorBoard reads a tag's metadata from its first
        event), what `__call__` reads: the squares (as `_squares`) then the updates they
        span (the optimizer's iterations between; 0: no baseline), flat, and the watched
        weights' `facts`, fixed with the trace, for `__call__` too. Where `keep` (a bool
        tensor: the probe's numbers are the ones kept) is true, the copy (made by
        `before_trace`) is refreshed."""
        weights = watched(model)
        paths = tuple(w.path for w in weights)
        copy = self._copies.pop(paths)
        # Last in, as the trace that uses it: the copies of the probe's live traces are the
        # latest MAX_TRACES (gradual unfreezing makes a weight set per step of it).
        self._copies[paths] = copy
        for old in list(self._copies)[:-MAX_TRACES]:
            del self._copies[old]
        return ([update_tag(p) for p in paths],) + copy(weights, updates_done(model), keep) + (
            facts(weights),)

    def before_trace(self, model):
        """TensorFlow, before the probe's call is traced, outside it: the copy `in_graph`
        will use. A variable made inside a trace makes TensorFlow trace the whole call
        again (its rule for functions that make variables): twice the first probe's time."""
        weights = watched(model)
        paths = tuple(w.path for w in weights)
        if paths not in self._copies:
            self._copies[paths] = _GraphCopy(weights)

    def __call__(self, model, measured=None, facts_of_measured=None):
        """`WeightUpdate`s since the last call (none at the first, or where the optimizer
        made no update: a ratio is per update, the optimizer's iterations, which lag the
        batches under gradient accumulation or a loss-scale optimizer's skipped steps), and
        keeps this copy; on TensorFlow, from the numbers `measured` that the probe's call
        returned from `in_graph`, with its `facts_of_measured`."""
        if measured is not None and len(measured):
            known = facts_of_measured or facts(watched(model))
            squares, steps = measured[:-1].reshape(-1, 2), int(measured[-1])
            paths = tuple(fact.path for fact in known)
            if self.paths is not None and list(paths) != self.paths:
                # Another weight set (a layer frozen or unfrozen): the other sets' copies
                # are of an earlier step, and a set used again starts a new baseline.
                for key, copy in self._copies.items():
                    if key != paths:
                        copy.last_step.assign(-1)
        else:
            weights = watched(model)
            known = facts(weights)
            paths = [fact.path for fact in known]
            if self._measure is None or self.paths != paths:  # compiled once per weight set
                self._measure, self.paths, self.step = _measurer(weights), paths, None
            squares = self._measure()
            step = int(keras.ops.convert_to_numpy(updates_done(model)))
            steps = step - self.step if self.step is not None else 0
            if steps > 0:
                # One compiled call and one transfer for all: eager, 10 weights took 9 ms.
                squares = keras.ops.convert_to_numpy(squares)
        self.paths = [fact.path for fact in known]
        if measured is None or not len(measured):
            self.step = step
        if steps <= 0:
            return []
        moved, base = squares.astype(np.float64).T
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(base > 0, np.sqrt(moved / base) / steps, np.nan).tolist()
        # NaN moved: a diverged weight, not a frozen one.
        return [WeightUpdate(fact.path, fact.layer, ratio, change != 0, fact.trainable,
                             fact.kernel, steps, before >= fact.grown)
                for fact, ratio, change, before in zip(known, ratios, moved.tolist(),
                                                        base.tolist())]


def updates_done(model):
    """The optimizer's count of the updates it made (0 without an optimizer)."""
    optimizer = getattr(model, "optimizer", None)
    return optimizer.iterations if optimizer is not None else 0


class Facts(typing.NamedTuple):
    """What an update ratio's judgement needs of a weight, fixed while its layer is."""
    path: str
    layer: str  # the owning layer's name
    trainable: bool
    kernel: bool  # rank >= 2 and not a bias (attention's biases are (heads, head size))
    grown: float  # the squared norm from which its ratio is judged (see `_grown`)


def facts(weights):
    return tuple(Facts(w.path, _owner(w.path), bool(w.trainable),
                       len(w.shape) >= 2 and not w.name.endswith("bias"), _grown(w.shape))
                 for w in weights)


def _grown(shape):
    """A tenth of LeCun's RMS, 1 / sqrt(fan_in), as a squared norm: a kernel below it is
    still growing from a zero start (Fixup's and muP's zero readouts, a zero-initialized
    branch), and moves by many times its own small norm in a healthy step; its ratio says
    nothing of the step's size until it has grown."""
    fan_in, _ = compute_fans(shape)
    return 0.01 * math.prod(shape) / max(1, fan_in)


class _GraphCopy:
    """TensorFlow: the copies of the watched weights as variables the probe's compiled call
    reads and assigns (no arguments to bind), with the step they are of (-1: none) and
    which weights had a finite ratio kept."""

    def __init__(self, weights):
        import tensorflow as tf

        self.copies = [tf.Variable(tf.cast(w.value, "float32"), trainable=False)
                       for w in weights]
        self.last_step = tf.Variable(-1, dtype="int64", trainable=False)
        self.described = tf.Variable(tf.zeros((len(weights),), "bool"), trainable=False)

    def __call__(self, weights, step, keep):
        """`step`: the optimizer's iterations now (its updates so far)."""
        import tensorflow as tf

        step = tf.cast(step, "int64")
        now = [tf.cast(w.value, "float32") for w in weights]
        before = [c.read_value() for c in self.copies]  # one read each, not one per use
        # `_squares` in TensorFlow's own ops: through keras.ops, a 200-layer MLP's first
        # probe took a quarter longer to trace.
        squares = 2.0 * tf.stack([tf.stack([tf.nn.l2_loss(n - b) for n, b in zip(now, before)]),
                                  tf.stack([tf.nn.l2_loss(b) for b in before])], 1)
        steps = tf.where(self.last_step >= 0, step - self.last_step, 0)
        ratios = tf.where(steps > 0, tf.sqrt(squares[:, 0] / squares[:, 1])
                          / tf.cast(tf.maximum(steps, 1), "float32"), float("nan"))

        described = self.described.read_value()

        def refresh():
            with tf.control_dependencies([squares, ratios, described]):  # read, then assigned
                ops = [c.assign(n) for c, n in zip(self.copies, now)]
                ops += [self.last_step.assign(step),
                        self.described.assign(described | tf.math.is_finite(ratios))]
            return tf.group(ops)

        with tf.control_dependencies([tf.cond(keep, refresh, tf.no_op)]):
            measured = tf.concat([tf.reshape(squares, (-1,)), tf.cast([steps], "float32")], 0)
            return tf.identity(ratios), tf.identity(described), tf.identity(measured)


def _measurer(weights):
    """JAX and PyTorch: a function of no arguments that gives, per weight, the squared
    norms of its change since its last call and of its value then (`(n, 2)`), and keeps
    the new value; compiled on JAX."""
    ops = keras.ops
    state = {"before": [ops.copy(ops.cast(w.value, "float32")) for w in weights]}

    def step(values, before):
        now = [ops.cast(v, "float32") for v in values]
        return _squares(now, before), [ops.copy(n) for n in now]

    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(step)

    def measure():  # PyTorch runs eagerly
        squares, state["before"] = step([w.value for w in weights], state["before"])
        return squares

    return measure


def _squares(now, before):
    """Per weight, the squared norms of its change and of its value before: `(n, 2)`
    (JAX and PyTorch; `_GraphCopy` computes the same in TensorFlow's ops)."""
    return keras.ops.stack([keras.ops.stack([sum_of_squares(n - b), sum_of_squares(b)])
                            for n, b in zip(now, before)])
