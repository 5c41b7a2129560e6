"""What `SignalMonitor(on_finding="restore")` keeps, watches and puts back.

- `Snapshot`: a copy of the model's variables and its optimizer's state, taken
  at a probe that found the run healthy, put back when it diverges.
- `LossWatch`: the per-batch loss recovered from the running mean Keras puts in
  `logs`, judged against its running median.
- `lower_learning_rate`: the optimizer's learning rate scaled down after a
  restore, a float or a schedule (wrapped in `ScaledSchedule`).
"""
import bisect
import collections
import contextlib
import math
import numbers

import keras
import numpy as np

from .._compat import flat_function, learning_rate_schedule

KEEP = ("host", "device")
AFTER_RESTORE = ("stop", "lower_lr")


def state_variables(model):
    """The variables a restore puts back: the model's (weights, normalization statistics,
    seed states) and the optimizer's, less its step count and learning rate. The step count
    keeps counting (TensorBoard's steps and a schedule's position go on), and the learning
    rate is what `after_restore="lower_lr"` changes."""
    optimizer = getattr(model, "optimizer", None)
    kept = list(model.variables)
    if optimizer is not None:
        # A schedule's learning rate is a tensor computed from the step count, not one of them.
        left_out = {id(optimizer.iterations), id(optimizer.learning_rate)}
        kept += [v for v in optimizer.variables if id(v) not in left_out]
    return kept


def build_optimizer(model):
    """Keras builds the optimizer's state (momenta, moments) at the first step, inside its
    traced step; built here instead, as that step would: a copy taken before it (or a
    probe's call traced to read it) finds that state, and the step, making no variables,
    is traced once instead of twice."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or optimizer.built:
        return
    strategy = (getattr(model, "distribute_strategy", None)
                if keras.backend.backend() == "tensorflow" else None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        optimizer.build(model.trainable_variables)


class Snapshot:
    """A copy of `state_variables(model)`, kept on the host (NumPy) or on the device, taken
    again at each healthy probe (`take`) and put back by `restore`.

    Args:
        model: The model being trained.
        keep: `"host"` (a NumPy copy: no device memory) or `"device"` (a copy
            on the variables' device: no transfer).

    On TensorFlow the copy is the values read, kept: a tensor read from a variable
    shares its buffer until the next step writes the variable, which then writes a
    new buffer (TensorFlow's tensors never change), so the copy costs no copying of
    its own, and `take` no call where the probe's call read the values already. On
    JAX (whose step reuses the buffers it is given) and PyTorch (which updates in
    place) the values are copied.
    """

    def __init__(self, model, keep):
        build_optimizer(model)
        self.variables = state_variables(model)
        self.ids = tuple(id(v) for v in self.variables)
        self.keep, self.step, self.values = keep, None, None
        self._read = _reader(self.variables, keep)
        # Bytes the copy holds: one copy of the weights and the optimizer's state.
        self.nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                          for v in self.variables)

    def matches(self, model):
        """Whether `model`'s state is still these variables (a layer unfrozen, an optimizer
        replaced, and it is not)."""
        return self.ids == tuple(id(v) for v in state_variables(model))

    def take(self, step, values=None):
        """Keeps the variables' values now, the state after `step` training steps: the
        `values` read already (TensorFlow tensors, in the order of `variables`), or read."""
        self.step = None  # a copy that fails half-way is no copy
        if values is None:
            self.values = self._read()
        else:
            self.values = [v.numpy() for v in values] if self.keep == "host" else list(values)
        self.step = step


    def restore(self):
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)


def _reader(variables, keep):
    """A function of no arguments that gives the values of `variables`, kept: NumPy arrays
    on the host, or tensors on the device; on TensorFlow by one compiled call."""
    if keras.backend.backend() != "tensorflow":
        copy = keras.ops.convert_to_numpy if keep == "host" else keras.ops.copy
        return lambda: [copy(v.value) for v in variables]
    import tensorflow as tf

    read = flat_function(lambda: [tf.identity(v.value) for v in variables])
    if keep == "host":
        return lambda: [t.numpy() for t in read()]
    return read


@keras.saving.register_keras_serializable(package="keras_initkit")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule times a constant factor.

    Args:
        schedule: A `keras.optimizers.schedules.LearningRateSchedule`.
        factor: The factor, > 0.

    Returns:
        `schedule(step) * factor` when called with a step.

    Example:
    >>> ScaledSchedule(keras.optimizers.schedules.CosineDecay(1e-3, 1000), 0.1)
    """

    def __init__(self, schedule, factor):
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError("`schedule` must be a keras.optimizers.schedules."
                            f"LearningRateSchedule; received schedule={schedule!r}.")
        check_factor(factor)
        self.schedule, self.factor = schedule, float(factor)

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(keras.optimizers.schedules.deserialize(config["schedule"]), config["factor"])


def check_factor(factor, name="factor"):
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not (
            0 < factor < 1):
        raise ValueError(f"`{name}` must be a number strictly between 0 and 1; received "
                         f"{name}={factor!r}.")


def lower_learning_rate(model, factor):
    """Scales the optimizer's learning rate by `factor`; returns a description of the new
    rate, or None when it cannot be lowered (a plain Python callable)."""
    # A loss-scale optimizer (mixed precision) keeps the rate in the optimizer it wraps.
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if isinstance(optimizer.learning_rate, keras.Variable):
        new = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) * factor
        optimizer.learning_rate = new  # assigned to its variable: no retrace
        return f"{new:.3g}"
    schedule = learning_rate_schedule(optimizer)
    if schedule is None:
        return None
    if isinstance(schedule, ScaledSchedule):  # lowered before: one wrapper, factors multiplied
        factor, schedule = factor * schedule.factor, schedule.schedule
    optimizer.learning_rate = ScaledSchedule(schedule, factor)
    # The compiled step computed the schedule it was traced with: trace it again.
    model.make_train_function(force=True)
    return f"{type(schedule).__name__} x {factor:.3g}"


class LossWatch:
    """The loss of each batch, judged as it comes.

    Keras' `logs["loss"]` at a batch's end is the mean over the epoch so far (its
    loss tracker weighs each batch by its size), so one batch's loss is recovered
    from two successive means: `(n_b * m_b - n_a * m_a) / (n_b - n_a)` with `n`
    the batches counted, exact for batches of one size (the last, smaller one
    of an epoch is weighed a little off). A batch whose loss is not finite, or
    above `spike` times the median of the last `window` batches' losses (after at
    least `warmup` of them) and above the highest that median has been (`peak`),
    diverges. The second condition keeps a converged run's noise from counting:
    near zero loss, one misclassified sample puts a batch at 10-20x the median
    (a separable task under Adam: 0.157 against a median of 0.0087), while a run
    that diverges passes every level it has been at (1e3 or NaN from a start at 2.3).
    The window starts anew with each `fit` (`start`): a new fit may bring new data.

    A run can also degrade slowly, each batch under `spike` times the median before
    it: `may_copy` then refuses a copy of a state whose median is above `spike`
    times the lowest median at any copy before (`best`).
    """

    def __init__(self, spike, window=100, warmup=2):
        self.spike, self.warmup, self.window = spike, warmup, window
        # The last `window` losses in arrival order, and the same sorted: a median per
        # batch then costs two bisections, not a sort (a tenth of a small model's step).
        self.recent, self._sorted = collections.deque(), []
        self.peak = None  # the highest median so far, over every fit
        self.start()

    def start(self):
        """A `fit` begins: no window, no lowest median at a copy, Keras' mean reset."""
        self.recent.clear()
        self._sorted.clear()
        self.best = None
        self.reset()

    def _median(self):
        values, n = self._sorted, len(self._sorted)
        return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])

    def _add(self, loss):
        if len(self.recent) == self.window:
            del self._sorted[bisect.bisect_left(self._sorted, self.recent.popleft())]
        self.recent.append(loss)
        bisect.insort(self._sorted, loss)

    def may_copy(self):
        """None when the recent losses allow a copy of the state (and it counts towards
        `best`), else the reason they do not."""
        if self.spike is None or len(self.recent) < self.warmup:
            return None
        median = self._median()
        if self.best is not None and median > self.spike * self.best:
            return (f"the median batch loss {median:.4g} is above {self.spike:g} x its "
                    f"lowest at a copy ({self.best:.4g})")
        self.best = median if self.best is None else min(self.best, median)
        return None

    def reset(self, last_batch=-1):
        """Keras' loss tracker was reset after batch `last_batch` of the epoch: -1 when an
        epoch begins, the batch of a restore (which resets the metrics) otherwise."""
        self.base, self.seen = last_batch, (0, 0.0)
        if last_batch < 0:
            self.epoch_losses = [0.0, 0]  # sum and count of the epoch's judged batches

    def epoch_mean(self):
        """The mean loss of the epoch's batches judged healthy (NaN: none), diverged ones
        left out: what the epoch reports when a restore emptied Keras' mean."""
        total, count = self.epoch_losses
        return total / count if count else float("nan")

    def __call__(self, batch, loss):
        """`batch` is Keras' batch index in the epoch (the last of a chunk of
        `steps_per_execution`); returns a reason to restore, or None."""
        if loss is None:
            return None
        loss = float(loss)
        if not math.isfinite(loss):
            return f"the training loss is {loss}"
        counted = batch - self.base
        done, mean = self.seen
        if counted <= done:  # a batch index seen before: nothing new
            return None
        latest = (counted * loss - done * mean) / (counted - done)
        self.seen = counted, loss
        if self.spike is not None and len(self.recent) >= self.warmup:
            median = self._median()
            if median > 0 and latest > self.spike * median and latest > self.peak:
                return (f"the batch loss {latest:.4g} is above {self.spike:g} x the median "
                        f"of the last {len(self.recent)} batches ({median:.4g}) and above "
                        f"the highest that median has been ({self.peak:.4g})")
        self._add(latest)
        self.epoch_losses = [self.epoch_losses[0] + latest, self.epoch_losses[1] + 1]
        if len(self.recent) >= self.warmup:
            median = self._median()
            self.peak = median if self.peak is None else max(self.peak, median)
        return None
