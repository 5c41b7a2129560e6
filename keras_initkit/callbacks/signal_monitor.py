"""SignalMonitor: per-layer activation and gradient statistics to TensorBoard, during `fit`."""
import math
import numbers
import os
import re
import typing
import warnings

import keras

from .._compat import flat_layers
from ..base_models import check_sizes
from ..diagnostics import (
    KINDS,
    Finding,
    Probe,
    cached_probe,
    judge,
    thresholds_from,
)
from ..diagnostics.batch import one_batch
from ..diagnostics.findings import update_findings
from ..diagnostics.probe import HookOutput, layer_paths
from ..distribution import multi_worker
from .event_writer import EventWriter, scalar_tags
from .first_batch import on_first_batch
from .run_guard import (
    AFTER_RESTORE,
    KEEP,
    LossWatch,
    Snapshot,
    build_optimizer,
    check_factor,
    lower_learning_rate,
    state_variables,
)
from .weight_updates import WeightUpdates, update_tag

ON_FINDING = ("warn", "stop", "raise", "restore")
# The statistics written as TensorBoard scalars (all of them stay in `history`).
# Besides these, `token_cosine` for sequence outputs and `attention/<path>/entropy` for
# attention probabilities (callbacks.in_graph_scalars).
_ACTIVATION_SCALARS = ("mean", "std", "grad_rms", "dead_fraction", "saturated_fraction",
                       "nan_count")
_WEIGHT_SCALARS = ("weight_norm", "grad_norm", "grad_to_weight")
# The pictures of `images=True` (callbacks.signal_images), with what TensorBoard shows of them.
PROFILE_TAG = "signal/propagation"
HEAT_MAP_TAG = "signal/activation_rms_heat_map"
_IMAGE_DESCRIPTIONS = {
    PROFILE_TAG: "Activation RMS (top) and RMS of the loss gradient with respect to each "
                 "layer's output (bottom), per layer in the order the layers ran, at this "
                 "step; log scale. Red x: NaN or Inf; red triangle: exactly 0.",
    HEAT_MAP_TAG: "Activation RMS of every layer (rows, in the order they ran, the first at "
                  "the top) at every probe so far (columns, oldest at the left). Colour: "
                  "log10 RMS from 1e-3 (blue) through 1 (yellow) to 1e3 (red), clipped; "
                  "black: the output held NaN or Inf; grey: exactly 0; white: not probed.",
}
# Found by benchmarks/bench_monitor.py --part images (benchmarks/README.md, session 18).
IMAGE_EVERY_N_PROBES = 50


class _Signal(typing.NamedTuple):
    """What the signal-propagation picture of one probe needs: per layer, in depth order."""

    step: int
    activation_rms: object  # Inf where the output held NaN or Inf
    gradient_rms: list


class HookFacts(typing.NamedTuple):
    """What the monitor's in-graph hook says about the trace it was traced in: the watched
    weights' `weight_updates.Facts`, and the ids of the state variables whose values it
    returns (`on_finding="restore"`; None otherwise)."""
    updates: tuple = None
    state: tuple = None


def _hook_facts(result):
    """The `HookFacts` of the trace that gave `result` (empty without the in-graph hook)."""
    return result.shared.get("hook", (0, HookFacts()))[1]


class FindingError(RuntimeError):
    """Raised by `SignalMonitor(on_finding="raise")`; `.finding` holds the `Finding`.

    On a multi-worker job, a worker whose own probe found nothing raises it too
    when another worker's did, with `.finding` None and `message` saying so.
    """

    def __init__(self, finding, message=None):
        super().__init__(message or finding.message)
        self.finding = finding


class SignalMonitor(keras.callbacks.Callback):
    """Logs every layer's activation and gradient statistics to TensorBoard, and reports findings.

    Every `every_n_steps` training steps (and once before the first), it runs
    `keras_initkit.diagnostics.Probe` on a fixed probe batch: one compiled
    pass, side-effect free, so training with the monitor gives the same
    weights as training without it. It writes per-layer scalars (activation
    mean, std, dead and saturated fractions, NaN count; weight norm, gradient
    norm and gradient-to-weight ratio) under tags made from each layer's unique
    path, optional histograms, optional pictures (`images=True`), and the
    findings as TensorBoard text.

    Under a `tf.distribute` strategy (`MirroredStrategy`,
    `MultiWorkerMirroredStrategy`) every worker probes the whole probe batch
    on one of its devices, at the same steps, and keeps its own `history`;
    only the chief (task 0 of "worker", or the "chief" task) creates `log_dir`
    and writes to it. On a multi-worker job the workers then agree by one
    all-reduce of two flags per probe: when any worker's finding stops
    training or raises, every worker does, at the same step, so none is left
    waiting in a collective of the training step.

    Args:
        log_dir: Folder for the TensorBoard event files (created if needed).
            The writer flushes every 100 events (a probe's scalars are one),
            at the first write two minutes after the last flush, when training
            ends, and before a `"raise"`.
        probe_data: The probe batch: `x`, a tuple `(x, y)` or `(x, y,
            sample_weight)` (the weights are not used), or a `tf.data.Dataset`
            or `keras.utils.PyDataset` whose first batch is taken; a few hundred
            samples are plenty. Default: the first batch the first `fit` call
            trains on, whatever its data (arrays, a `tf.data.Dataset`,
            shuffled or not, a generator, a `PyDataset`), taken as its train
            function receives it, before its step (`first_batch`): training
            sees the same batches in the same order. The probe of the state
            training starts from then runs just before that step.
        every_n_steps: Probe every this many training steps. Default 200: a
            probe of one training batch, with its writes, costs one or two
            training steps, about 1% at this interval (benchmarks/README.md).
        histograms: Also write histograms of activations, gradients and
            weights (large transfers; off by default).
        layers: The layers that get histograms: names or paths (a list), or
            a regular expression searched in each layer's path (a string or
            compiled pattern). A weight goes with the layer that owns it.
            Default: every layer. Scalars cover every layer either way.
        on_finding: What a finding of severity "error" does: `"warn"` (a
            Python warning, once per kind and layer), `"stop"` (sets
            `model.stop_training`), `"raise"` (raises `FindingError`),
            `"restore"` (see below), or a callable that receives each
            `Finding`, warnings included. A warning (it trains, worse) is
            only warned of, except to a callable.
        restore_on: With `on_finding="restore"`, the kinds of error findings
            that mean the run diverges. Default `("nonfinite", "exploding")`.
            At each probe without one, the monitor keeps a copy of the
            model's variables and the optimizer's state (`keep`); when a
            probe finds one, or a batch's training loss is not finite or
            spikes (`loss_spike`), it puts the copy back, says so in a
            warning, in TensorBoard text (`restore`) and in
            `history["restores"]`, and does `after_restore`. The optimizer's
            step count is not put back (TensorBoard's steps and a schedule's
            position go on), nor its learning rate. The weights are also
            checked to be finite at each epoch's end, before the callbacks
            after the monitor (a `ModelCheckpoint`) see them. A restore empties
            Keras' running metrics (the diverged steps leave the epoch's mean);
            an epoch that counts no batch after it logs the mean loss of its
            healthy batches, and NaN for its other training metrics, not
            Keras' 0. `restore_on`, `after_restore`, `lr_factor`, `keep` and
            `loss_spike` apply only here. Not on a multi-worker job.
        after_restore: `"stop"` (training stops with the restored weights,
            bit for bit) or `"lower_lr"` (training goes on with the learning
            rate times `lr_factor`: a float is assigned, a schedule is wrapped
            in `run_guard.ScaledSchedule` and the step traced again).
        lr_factor: The factor of `"lower_lr"`, in (0, 1). Default 0.1, as
            `keras.callbacks.ReduceLROnPlateau`'s.
        keep: Where the copy lives: `"host"` (NumPy, no device memory) or
            `"device"` (no transfer). It holds one copy of the weights and
            the optimizer's state (`monitor.snapshot_bytes`).
        loss_spike: With `"restore"`, a batch's loss above this times the
            median of the last 100 batches of this `fit` (after 2), and above
            the highest that median has been, diverges (a converged run's
            noisy batches, far above a near-zero median, do not); None
            judges only non-finite losses. Default 10. A state whose median batch
            loss is above this times its lowest at an earlier copy (a slow
            degradation) is not copied. The loss is read from the
            `logs` Keras hands `on_train_batch_end`, which makes Keras wait
            for each step's logs (it does for any callback with a batch-end
            hook): `"restore"` costs that sync, the other choices do not.
            Keras' `logs["loss"]` is the epoch's running mean; each batch's
            loss is recovered from two successive means (`run_guard.LossWatch`).
            With `steps_per_execution=k` Keras hands the logs once per k steps:
            the check then judges the mean of those k batches. A batch's loss is
            computed before its update, so an update that makes the weights
            non-finite shows in the next batch's loss, or at the next probe.
        loss: Loss for `y` when the model is not compiled with one.
        images: Also draw two pictures into TensorBoard's Images tab (off by
            default): `"signal/propagation"`, the activation RMS and the
            backward gradient RMS of every layer over depth at that step
            (log scale), and `"signal/activation_rms_heat_map"`, every
            layer's activation RMS at every probe so far as one layer x probe
            picture (log10 colour scale, fixed from 1e-3 to 1e3; 8 pixels a
            cell, at most 1024 pixels a side), which shows a 500-layer model
            in one picture. NaN, Inf and zero are marked. A failure to draw
            warns; training goes on.
        image_every_n_probes: With `images`, draw at the monitor's first probe
            and every this many probes after it, and at the last probe of each
            `fit` (when training ends). Default 50, chosen by measurement
            (benchmarks/README.md, session 18): a picture pair of a small
            model costs about 9 ms (drawn, encoded, written; the first, which
            sets up matplotlib, about 0.2 s), and at 50 `images=True` adds
            under 1% of training time at `every_n_steps=200` and under 2% at
            16, where 10 added 4%. TensorBoard keeps 10 pictures per tag
            unless started with `--samples_per_plugin images=N`; the heat map
            shows every probe whatever the interval. Its cost grows with the
            model and the history: a 500-layer model's pair after 1,000
            probes takes about 0.1 s.
        **thresholds: Any field of `keras_initkit.diagnostics.Thresholds`.

    At each probe after the first, each weight's mean relative update per step
    since the last probe, ||W_now - W_before|| / ||W_before|| / steps, is
    logged as `weight/<path>/update_ratio` and judged (`kind="update"`): a
    kernel above `update_ratio` (1e-1 a step, a warning; above
    `update_error_ratio`, 1.0, an error) where about 1e-3 is healthy (CS231n,
    "Neural Networks Part 3"), and a weight whose float32 value did not change
    at all over two steps or more (an update below float32's resolution of the
    weight changes nothing): a layer with `trainable=False`, a branch cut from
    the loss, a zero gradient. When training ends, the last step is probed if
    it was not, unless the monitor itself stopped the run.

    Attributes:
        history: `{"step": [...], "activations": {path: {stat: [...]}},
            "weights": {path: {stat: [...]}}, "findings": [(step, Finding)],
            "restores": [{"step", "restored_step", "reason", "action"}]}`;
            it grows by one entry per probe (and per restore), nothing else.
            `weights[path]["update_ratio"]` is NaN at the first probe.
        snapshot_bytes: With `"restore"`, the bytes of the last copy kept.

    Example:
    >>> monitor = SignalMonitor("logs/he", probe_data=x_train[:256], every_n_steps=50)
    >>> model.fit(x_train, y_train, epochs=5, callbacks=[monitor])
    >>> monitor.history["activations"]["sequential/dense_3"]["std"]

    With pictures of the signal, in TensorBoard's Images tab:
    >>> monitor = SignalMonitor("logs/he", probe_data=x_train[:256], images=True)

    Guarding a run: a diverging step is undone, then the rate is lowered:
    >>> monitor = SignalMonitor("logs/run", every_n_steps=50, on_finding="restore",
    ...                         after_restore="lower_lr")
    >>> model.fit(x_train, y_train, callbacks=[monitor, keras.callbacks.ModelCheckpoint(path)])
    >>> monitor.history["restores"]
    """

    def __init__(self, log_dir, probe_data=None, every_n_steps=200, histograms=False,
                 on_finding="warn", loss=None, layers=None, images=False,
                 image_every_n_probes=IMAGE_EVERY_N_PROBES, restore_on=("nonfinite", "exploding"),
                 after_restore="stop", lr_factor=0.1, keep="host", loss_spike=10.0,
                 **thresholds):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"`log_dir` must be a path; received log_dir={log_dir!r}.")
        check_sizes(every_n_steps=every_n_steps, image_every_n_probes=image_every_n_probes)
        for name, flag in (("histograms", histograms), ("images", images)):
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be True or False; received {name}={flag!r}.")
        if loss is not None:
            try:
                keras.losses.get(loss)
            except (ValueError, TypeError):
                raise ValueError(f"`loss` must be None, a Keras loss name or a callable; "
                                 f"received loss={loss!r}.") from None
        if not (on_finding in ON_FINDING or callable(on_finding)):
            raise ValueError(f"`on_finding` must be one of {ON_FINDING} or a callable; "
                             f"received on_finding={on_finding!r}.")
        self.log_dir = os.fspath(log_dir)
        self.x, self.y = (None, None) if probe_data is None else one_batch(probe_data,
                                                                            "probe_data")
        self.every_n_steps = int(every_n_steps)
        self.histograms = bool(histograms)
        self.images, self.image_every_n_probes = images, image_every_n_probes
        self.layers = _layer_selector(layers, self.histograms)
        self.on_finding = on_finding
        self.restore_on, self.after_restore, self.keep = _check_restore(
            restore_on, after_restore, keep)
        check_factor(lr_factor, "lr_factor")
        if loss_spike is not None and (isinstance(loss_spike, bool) or not isinstance(
                loss_spike, numbers.Real) or not loss_spike > 1):
            raise ValueError("`loss_spike` must be None or a number > 1; received "
                             f"loss_spike={loss_spike!r}.")
        if on_finding != "restore":  # a guard asked for and not switched on: say so
            given = {name: value for name, value, default in [
                ("restore_on", self.restore_on, ("nonfinite", "exploding")),
                ("after_restore", after_restore, "stop"), ("lr_factor", lr_factor, 0.1),
                ("keep", keep, "host"), ("loss_spike", loss_spike, 10.0)] if value != default}
            if given:
                raise ValueError(
                    f"{', '.join(f'`{name}`' for name in given)} only apply with "
                    f"on_finding='restore'; received on_finding={on_finding!r} with "
                    + ", ".join(f"{name}={value!r}" for name, value in given.items()) + ".")
        self.lr_factor, self.loss_spike = float(lr_factor), loss_spike
        self.snapshot_bytes = 0
        self._snapshot = self._loss_watch = None
        self._batch = None  # the probe batch on the device, once known
        self._cancel_first_batch = None  # undoes on_first_batch's wrapper if never called
        # A step to undo at its end; a stop of the monitor's own; Keras' metrics emptied by a
        # restore, with no batch counted since.
        self._restore_at_batch_end = self._stopped = self._emptied = False
        self._updates = WeightUpdates()
        if on_finding == "restore":
            self._loss_watch = LossWatch(loss_spike)
            # An instance attribute, not a method of the class: Keras waits for each step's
            # logs only for callbacks with a batch-end hook, so only "restore" has one.
            self.on_train_batch_end = self._watch_loss
        self.loss = loss
        self.thresholds = thresholds_from(thresholds, "SignalMonitor()")
        self.history = {"step": [], "activations": {}, "weights": {}, "findings": [],
                        "restores": []}
        self._warned, self._notes = set(), set()
        self._layout, self._absent = None, []  # the rows `_record` saw last, and those gone
        self._step = self._epoch_base = self._next_probe = 0
        self._last_batch = self._batches_done = None  # this epoch's last batch; batches done
        self._probed_step = None  # the last step probed, whether or not the probe succeeded
        self._probe = self._writer = None
        self._any_worker = None  # the cross-worker agreement, on a multi-worker job only
        self._profile = None  # the images' SignalProfile, made at the first picture
        # The last probe's _Signal, and the last step pictured.
        self._signal = self._pictured_step = None

    def on_train_begin(self, logs=None):
        on_tensorflow = keras.backend.backend() == "tensorflow"
        # TensorFlow's trainer only; JAX and PyTorch have no tf.distribute strategy.
        strategy = getattr(self.model, "distribute_strategy", None) if on_tensorflow else None
        # The default strategy says True: a single process is its own chief.
        chief = strategy is None or strategy.extended.should_save_summary
        if strategy is not None and multi_worker(strategy):
            if self.on_finding == "restore":
                raise ValueError("SignalMonitor(on_finding='restore') restores one process's "
                                 "copy; on a multi-worker job use on_finding='stop' or 'raise' "
                                 "and restart from a checkpoint.")
            if self._any_worker is None:
                self._any_worker = _any_worker(strategy)
        if chief:
            ensure_writable(self.log_dir,
                            f"SignalMonitor cannot write to log_dir={self.log_dir!r}")
        if self._writer is None and chief:  # kept across fit() calls: the trace captured it
            # A flush syncs the file: at the default queue of 10 events, once per 10 probes,
            # it cost 5% of a probe's time.
            if on_tensorflow:
                import tensorflow as tf

                self._writer = tf.summary.create_file_writer(self.log_dir, max_queue=100)
            else:  # TensorBoard's own writer, from the probe's numbers on the host
                self._writer = EventWriter(self.log_dir, max_queue=100)
        # Before the probe's call is traced to read the optimizer's state (restore), and
        # before the first step: Keras builds it inside the traced step otherwise, and a
        # function that makes variables is traced twice (a third of a small model's first fit).
        build_optimizer(self.model)
        # Steps count training batches, on from the last fit's (or the optimizer's count,
        # where more: a fit without the monitor since). The optimizer's iterations lag the
        # batches under gradient accumulation and a loss-scale optimizer's skipped steps.
        iterations = self._iterations()
        self._step = self._epoch_base = (iterations if self._batches_done is None
                                         else max(self._batches_done, iterations))
        self._last_batch = None  # no epoch begun yet
        # Nothing of an earlier fit carries over: its losses, its pending undo, its stop.
        self._restore_at_batch_end = self._stopped = self._emptied = False
        if self._loss_watch is not None:
            self._loss_watch.start()
        if self.x is None:  # no probe_data: the first training batch, before its step
            self._cancel_first_batch = on_first_batch(self.model, self._first_batch)
            return
        self._start()

    def _first_batch(self, x, y):
        """`on_first_batch`'s: the probe batch, and the probe of the state training starts
        from (a failed probe warns and training goes on, as at any step)."""
        self.x, self.y = x, y
        self._start()

    def _start(self):
        """The probe (its trace kept across fit() calls) and the probe of this step."""
        on_tensorflow = keras.backend.backend() == "tensorflow"
        if self._probe is None or self._probe.model is not self.model:  # reuse its trace
            from .in_graph_scalars import InGraphScalars

            scalars = None if self._writer is None or not on_tensorflow else InGraphScalars(
                self._writer, _ACTIVATION_SCALARS, _WEIGHT_SCALARS)
            self._probe = Probe(self.model, loss=self.loss,
                                saturation_threshold=self.thresholds.saturation_threshold,
                                in_graph_hook=self._in_graph_hook(scalars) if on_tensorflow
                                else None,
                                tensors_of=self.layers and self.layers(self.model))
        # On the device once: each probe then skips the host-to-device copy.
        on_device = lambda data: keras.tree.map_structure(keras.ops.convert_to_tensor, data)  # noqa
        self._batch = (on_device(self.x), None if self.y is None else on_device(self.y))
        self._probe_if_due(force=True)  # the state training starts from

    def _in_graph_hook(self, scalars):
        """TensorFlow: inside the probe's compiled call, the update ratios, then every
        scalar written in one event (`scalars`, None where this process writes none); it
        returns what `WeightUpdates` reads from the probe's result, and with
        `on_finding="restore"` the values the copy of a healthy state keeps."""
        def hook(tables, step, first):
            *updates, measured, facts = self._updates.in_graph(self.model,
                                                               tables.all_finite)
            if scalars is not None:
                scalars(tables, step, first, updates)
            if self.on_finding != "restore":
                return HookOutput(measured, about=HookFacts(facts, None))
            # The state the copy of a healthy probe keeps, read in the same call.
            state = state_variables(self.model)
            return HookOutput(measured, [v.value for v in state],
                              HookFacts(facts, tuple(id(v) for v in state)))

        hook.before_trace = lambda: self._updates.before_trace(self.model)
        return hook

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_base += self._batches_in_epoch(complete=True)  # the epoch before, if any
        self._last_batch = -1
        if self._loss_watch is not None:
            self._loss_watch.reset()

    def on_epoch_end(self, epoch, logs=None):
        if self._emptied and logs is not None:
            # A restore emptied Keras' metrics and no batch was counted since: Keras
            # reports its mean of nothing, 0, which a ModelCheckpoint or EarlyStopping
            # after this callback would take for the best loss ever. The loss is the
            # mean of the epoch's healthy batches; other metrics, not known per batch, NaN.
            for name in self.model.get_metrics_result():
                if name in logs:
                    logs[name] = (self._loss_watch.epoch_mean() if name == "loss"
                                  else float("nan"))
            self._emptied = False
        # Before the callbacks after this one (a ModelCheckpoint) save the weights.
        if self._snapshot is not None and not self._weights_finite():
            self._step = self._epoch_base + self._batches_in_epoch(complete=True)
            self._restore("a weight is not finite at the epoch's end")

    def _watch_loss(self, batch, logs=None):
        """`on_train_batch_end` of `on_finding="restore"`: the batch's loss, judged."""
        self._emptied = False  # Keras counted this batch in its metrics
        if self._restore_at_batch_end:  # "stop" after a probe's restore: this step undone
            self._restore_at_batch_end = False
            self._snapshot.restore()
            return
        try:
            reason = self._loss_watch(batch, (logs or {}).get("loss"))
        except Exception as error:  # diagnostics never end the training
            warnings.warn(f"SignalMonitor: the loss check failed ({_first_line(error)}).",
                          stacklevel=2)
            return
        if reason is not None:
            self._step = self._epoch_base + batch + 1  # the step the weights are after
            self._restore(reason, last_batch=batch)

    # Probing at the start of a batch (of the weights after the steps done so far), not at
    # its end: Keras runs training asynchronously only for callbacks without *_batch_end
    # hooks, and a probe needs no step's logs.
    def on_train_batch_begin(self, batch, logs=None):
        self._last_batch = batch
        self._step = self._epoch_base + batch
        self._probe_if_due()

    def on_train_end(self, logs=None):
        if self._cancel_first_batch is not None:  # a fit of no steps: no batch was taken
            self._cancel_first_batch()
            self._cancel_first_batch = None
        self._step = self._batches_done = self._epoch_base + self._batches_in_epoch()
        if self._snapshot is not None and not self._weights_finite():
            self._restore("a weight is not finite at the end of training")
        if not self._stopped:  # a run the monitor stopped ends on the probe that stopped it
            self._probe_if_due(force=True)  # the final state, always in the history
        self._restore_at_batch_end = False  # no step follows to undo
        # Training ends with the picture of its last probe, due or not.
        if self._signal is not None and self._signal.step != self._pictured_step:
            self._write_images()
        if self._writer is not None:
            self._writer.flush()

    def _batches_in_epoch(self, complete=False):
        """The batches trained in the epoch so far (0 before any): all its steps where
        Keras knows them and it is `complete`, else from its last batch's index, with the
        chunk Keras runs at once (`steps_per_execution`), at most its steps."""
        if self._last_batch is None:  # no epoch begun
            return 0
        steps = (self.params or {}).get("steps")
        if complete and steps:
            return steps
        if self._last_batch < 0:
            return 0
        done = self._last_batch + (getattr(self.model, "steps_per_execution", 1) or 1)
        return min(done, steps) if steps else done

    def _iterations(self):
        """The optimizer's step count, where a model's first fit with the monitor starts."""
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        return int(keras.ops.convert_to_numpy(iterations)) if iterations is not None else 0

    def _probe_if_due(self, force=False):
        if self._batch is None:  # before the first batch, or it could not be taken
            return
        # Probed already, successfully or not: the schedule depends on the step alone, so
        # every worker of a multi-worker job probes (and agrees) at the same steps.
        if self._probed_step == self._step:
            return
        if force or self._step >= self._next_probe:
            self._next_probe = (self._step // self.every_n_steps + 1) * self.every_n_steps
            self._run_probe()

    def _run_probe(self):
        self._probed_step = self._step
        findings = []
        try:
            # On JAX, fit keeps the training state apart from the variables between syncs;
            # a callback's `self.model` syncs them, so the probe sees this step's weights.
            self.model
            # The scalars are written inside the probe's own compiled call.
            with_tensors = self.histograms and self._writer is not None
            result = self._probe(*self._batch, with_tensors=with_tensors, step=self._step)
            findings, note = self._judge(result)
            updates = self._updates(self.model, result.hook_numbers,
                                    _hook_facts(result).updates)
            findings += update_findings(updates, self.thresholds)
            if note and note not in self._notes:
                self._notes.add(note)
                warnings.warn(f"SignalMonitor at step {self._step}: {note}", stacklevel=2)
            self._record(result, findings, updates)
            if isinstance(self._writer, EventWriter):  # TensorFlow writes them in the probe
                self._write_scalars(result, updates)
            self._write(result, findings)
            if self.images and self._writer is not None:
                self._signal = _signal_of(self._step, result)
                # The monitor's first probe, and every image_every_n_probes-th after it.
                if (len(self.history["step"]) - 1) % self.image_every_n_probes == 0:
                    self._write_images()
        except Exception as error:  # a diagnostics failure must never lose the training
            warnings.warn(f"SignalMonitor: the probe at step {self._step} failed and was "
                          f"skipped ({_first_line(error)}).", stacklevel=2)
            return
        if self.on_finding == "restore":
            self._guard(findings, result)
        if self._any_worker is None:
            for finding in findings:
                self._act(finding)
            return
        # A multi-worker job: decide locally, then do what any worker decided, on every
        # worker. A worker that stopped or raised alone would leave the others waiting
        # in the next step's all-reduce.
        stopped_before, raised = self.model.stop_training, None
        try:
            for finding in findings:
                self._act(finding)
        except Exception as error:  # raised after the agreement, if agreed
            raised = error
        stop, self.model.stop_training = self.model.stop_training, stopped_before
        try:
            any_raised, any_stopped = self._any_worker([raised is not None, stop])
        except Exception as error:  # diagnostics never end the training
            warnings.warn(f"SignalMonitor: the workers could not agree on the probe at step "
                          f"{self._step} ({type(error).__name__}: {error}); no worker stops "
                          "or raises on its findings alone.", stacklevel=2)
            return
        if any_stopped:
            self._stop()
        if raised is not None:
            raise raised
        if any_raised:
            raise FindingError(None, f"SignalMonitor at step {self._step}: another worker's "
                                     "probe raised; every worker stops here.")

    def _judge(self, result):
        """`(findings, note)` of a probe's result: `judge`'s one-step view where kernels
        start at zero on purpose, taken by a probe that writes nothing to TensorBoard."""
        quiet = cached_probe(self.model, self.loss, self.thresholds.saturation_threshold)
        _, findings, note = judge(self._probe, *self._batch, self.thresholds,
                                  stepped_probe=quiet, result=result)
        return findings, note

    def _guard(self, findings, result):
        """`on_finding="restore"` at a probe: restore on a diverging finding, else keep a
        copy of this healthy state."""
        diverging = [f for f in findings if f.severity == "error" and f.kind in self.restore_on]
        if diverging:
            self._restore(f"{diverging[0].kind}: {diverging[0].message}",
                          last_batch=self._step - self._epoch_base - 1)
            # With "stop", the step of this batch runs still: undone at its end.
            self._restore_at_batch_end = (self.after_restore == "stop"
                                          and self._snapshot is not None)
            return
        if any(f.kind == "nonfinite" for f in findings):  # not restored on, and not healthy
            return
        degraded = self._loss_watch.may_copy()
        if degraded is not None:  # the last copy stays
            if "degraded" not in self._warned:
                self._warned.add("degraded")
                warnings.warn(f"SignalMonitor at step {self._step}: no copy of this state: "
                              f"{degraded}.", stacklevel=2)
            return
        try:
            if self._snapshot is None or not self._snapshot.matches(self.model):
                self._snapshot = Snapshot(self.model, self.keep)
            # The values the probe's call read, where it read these variables.
            read = _hook_facts(result).state == self._snapshot.ids
            self._snapshot.take(self._step, result.hook_tensors if read else None)
            self.snapshot_bytes = self._snapshot.nbytes
        except Exception as error:  # nothing to restore until the next healthy probe
            self._snapshot = None
            warnings.warn(f"SignalMonitor: the copy at step {self._step} failed "
                          f"({_first_line(error)}).", stacklevel=2)

    def _restore(self, reason, last_batch=-1):
        """Puts the last healthy copy back, then stops or lowers the learning rate."""
        model = self.model  # on JAX, syncs the training state first
        snapshot = self._snapshot
        if snapshot is None:
            action = "stopped: no probe found the run healthy before, nothing to restore"
            self._stop()
        else:
            try:
                snapshot.restore()
                model.reset_metrics()  # the epoch's mean loss held the diverged steps
                self._emptied = True
                self._loss_watch.reset(last_batch)
                self._updates.forget()
                action = "stopped"
                if self.after_restore == "lower_lr":
                    rate = lower_learning_rate(model, self.lr_factor)
                    action = (f"lowered the learning rate to {rate}" if rate is not None else
                              "stopped: the learning rate is a plain callable, not lowered")
                if not action.startswith("lowered"):
                    self._stop()
            except Exception as error:  # a failed restore must not go on diverging
                self._stop()
                action = f"stopped: the restore failed ({_first_line(error)})"
        restored = None if snapshot is None else snapshot.step
        message = (f"SignalMonitor at step {self._step}: {reason}. Restored the weights and "
                   f"optimizer state of step {restored} (the last healthy probe) and "
                   f"{action}." if restored is not None else
                   f"SignalMonitor at step {self._step}: {reason}; {action}.")
        warnings.warn(message, stacklevel=2)
        self.history["restores"].append(dict(step=self._step, restored_step=restored,
                                             reason=reason, action=action))
        self._write_text("restore", message)

    def _weights_finite(self):
        ops = keras.ops
        try:
            return bool(ops.convert_to_numpy(ops.all(ops.stack([
                ops.all(ops.isfinite(v.value)) for v in self.model.trainable_variables]))))
        except Exception:  # a check that cannot run finds nothing
            return True

    def _write_text(self, tag, text):
        if self._writer is None:
            return
        try:
            if isinstance(self._writer, EventWriter):
                self._writer.text(tag, text, self._step)
            else:
                import tensorflow as tf

                with self._writer.as_default(step=self._step):
                    tf.summary.text(tag, text)
            self._writer.flush()
        except Exception as error:
            warnings.warn(f"SignalMonitor: writing {tag!r} failed ({_first_line(error)}).",
                          stacklevel=2)

    def _record(self, result, findings, updates=()):
        self.history["step"].append(self._step)
        n, nan = len(self.history["step"]), float("nan")
        for group, rows in (("activations", result.activations), ("weights", result.weights)):
            for path, _, s, *_ in rows:
                series = self.history[group].setdefault(path, {})
                for key, value in s.items():
                    column = series.setdefault(key, [])
                    if len(column) < n - 1:  # a row new since the first probe (unfrozen)
                        column += [nan] * (n - 1 - len(column))
                    column.append(value)
        self.history["findings"] += [(self._step, f) for f in findings]
        # One value per probe for every watched weight: NaN where none was measured.
        ratios = {u.path: u.ratio for u in updates}
        for path in self._updates.paths or ():
            series = self.history["weights"].setdefault(path, {})
            column = series.setdefault("update_ratio", [])
            column += [float("nan")] * (len(self.history["step"]) - 1 - len(column))
            column.append(ratios.get(path, float("nan")))
        # Rows of earlier probes that this one lacks (a layer frozen since): NaN, so that
        # every column keeps one value per probe. Looked for when the rows change.
        layout = (tuple(r.path for r in result.activations),
                  tuple(r.path for r in result.weights))
        if layout != self._layout:
            self._layout = layout
            present = {"activations": set(layout[0]), "weights": set(layout[1])}
            self._absent = [(group, path) for group in present for path in self.history[group]
                            if path not in present[group]]
        for group, path in self._absent:
            for column in self.history[group][path].values():
                column += [nan] * (n - len(column))

    def _write_scalars(self, result, updates):
        """The scalars and update ratios that TensorFlow's probe writes in its compiled
        call, from the host."""
        numbers = [v for row in result.activations for v in row.stats.values()] + [
            v for row in result.weights for v in row.stats.values()]
        tags = scalar_tags([row.path for row in result.activations], result.shared["kinds"],
                           [row.path for row in result.weights], _ACTIVATION_SCALARS,
                           _WEIGHT_SCALARS)
        self._writer.scalars([(tag, numbers[at]) for tag, at in tags] + [
            (update_tag(u.path), u.ratio) for u in updates if math.isfinite(u.ratio)],
            self._step)

    def _write(self, result, findings):
        """Histograms and findings; the scalars are written already."""
        if self._writer is None or not (self.histograms or findings):  # not the chief, or nothing
            return
        text = None if not findings else (
            "| severity | kind | signal | layer | value | message |\n|---|---|---|---|---|---|\n"
            + "\n".join(f"| {f.severity} | {f.kind} | {f.signal} | {f.layer} | {f.value:.3g} | "
                        f"{f.message} |" for f in findings))
        variables = {v.path: v for v in self.model.trainable_variables}
        if isinstance(self._writer, EventWriter):
            to_numpy, step = keras.ops.convert_to_numpy, self._step
            if self.histograms:
                for path, tensor in result.activation_tensors:
                    self._writer.histogram(f"activation/{path}", to_numpy(tensor), step)
                for path, grad in result.gradient_tensors:
                    self._writer.histogram(f"gradient/{path}", to_numpy(grad), step)
                    self._writer.histogram(f"weight/{path}", to_numpy(variables[path].value), step)
            if text:
                self._writer.text("findings", text, step)
            return
        import tensorflow as tf

        with self._writer.as_default(step=self._step):
            if self.histograms:
                for path, tensor in result.activation_tensors:
                    tf.summary.histogram(f"activation/{path}", tensor)
                for path, grad in result.gradient_tensors:
                    tf.summary.histogram(f"gradient/{path}", grad)
                    tf.summary.histogram(f"weight/{path}", variables[path].value)
            if text:
                tf.summary.text("findings", text)

    def _write_images(self):
        """The signal-propagation picture of the last probe and the heat map of the history
        so far, through the chief's writer; a failure warns and training goes on."""
        from . import signal_images

        signal = self._signal
        step = self._pictured_step = signal.step  # tried: a failed one is not tried again
        try:
            if self._profile is None:
                self._profile = signal_images.SignalProfile()
            pictures = {PROFILE_TAG: self._profile(signal.activation_rms, signal.gradient_rms,
                                                   title=f"step {step}"),
                        HEAT_MAP_TAG: signal_images.heat_map(
                            signal_images.history_table(self.history))}
            for tag, picture in pictures.items():
                self._write_image(tag, picture, step)
        except Exception as error:  # a diagnostics failure must never lose the training
            warnings.warn(f"SignalMonitor: the images at step {step} failed and were "
                          f"skipped ({_first_line(error)}).", stacklevel=2)

    def _write_image(self, tag, picture, step):
        if isinstance(self._writer, EventWriter):
            self._writer.image(tag, picture, step, _IMAGE_DESCRIPTIONS[tag])
            return
        import tensorflow as tf
        from tensorboard.plugins.image.metadata import create_summary_metadata

        # What tf.summary.image writes ([width, height, PNG], the images plugin's metadata),
        # but at zlib level 1: faster to encode, and flat-coloured pictures compress about
        # as well.
        height, width = picture.shape[:2]
        with self._writer.as_default(step=step):
            tf.summary.write(tag, tf.stack([
                tf.as_string(width), tf.as_string(height),
                tf.io.encode_png(picture, compression=1)]),
                metadata=create_summary_metadata(display_name=None,
                                                 description=_IMAGE_DESCRIPTIONS[tag]))

    def _act(self, finding):
        if callable(self.on_finding):
            self.on_finding(finding)
            return
        if finding.severity != "error" or self.on_finding in ("warn", "restore"):
            key = (finding.kind, finding.signal, finding.path or finding.layer)
            if key not in self._warned:
                self._warned.add(key)
                warnings.warn(f"SignalMonitor at step {self._step}: {finding.severity}: "
                              f"{finding.message}", stacklevel=2)
            return
        if self.on_finding == "raise":
            if self._writer is not None:  # what is queued, the findings included, is kept
                self._writer.flush()
            raise FindingError(finding)
        self._stop()  # "stop"

    def _stop(self):
        self.model.stop_training = self._stopped = True


def _check_restore(restore_on, after_restore, keep):
    kinds = (restore_on,) if isinstance(restore_on, str) else restore_on
    if not isinstance(kinds, (list, tuple, set)) or not kinds or not all(
            isinstance(kind, str) and kind in KINDS for kind in kinds):
        raise ValueError(f"`restore_on` must be a non-empty list of finding kinds from {KINDS}; "
                         f"received restore_on={restore_on!r}.")
    if after_restore not in AFTER_RESTORE:
        raise ValueError(f"`after_restore` must be one of {AFTER_RESTORE}; received "
                         f"after_restore={after_restore!r}.")
    if keep not in KEEP:
        raise ValueError(f"`keep` must be one of {KEEP}; received keep={keep!r}.")
    return tuple(kinds), after_restore, keep


def _first_line(error):
    """`Type: first line of the message`, at most 300 characters of it, for a warning."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}"


def _signal_of(step, result):
    """The `_Signal` of a probe's result at `step`."""
    from .signal_images import nonfinite_as_inf

    rows = [row.stats for row in result.activations]
    return _Signal(step, nonfinite_as_inf([s["rms"] for s in rows],
                                          [s["nan_count"] for s in rows],
                                          [s["inf_count"] for s in rows]),
                   [s["grad_rms"] for s in rows])


def _any_worker(strategy):
    """`flags -> flags`, each bool OR-ed over every replica of every worker by one all-reduce.

    Every worker must call it at the same points (it is a collective): the
    monitor probes at the same steps on each, and calls it once per probe.
    """
    import tensorflow as tf

    @tf.function(autograph=False)
    def summed(flags):
        per_replica = strategy.run(tf.identity, (flags,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return lambda flags: [bool(v > 0) for v in
                          summed(tf.constant([float(f) for f in flags])).numpy()]


def _layer_selector(layers, histograms):
    """`layers=` checked, as `model -> (layer -> bool)`, or None for every layer.

    Names are checked against the model when training begins, so a typo is an
    error there, not an empty set of histograms.
    """
    if layers is None:
        return None
    if not histograms:
        raise ValueError("`layers` chooses the layers that get histograms; pass "
                         f"histograms=True with it (received layers={layers!r}).")
    if isinstance(layers, (str, re.Pattern)):
        try:
            pattern = re.compile(layers)
        except re.error as error:
            raise ValueError(f"`layers` is not a valid regular expression ({error}); "
                             f"received layers={layers!r}.") from None
        def matching(model):
            path_of = layer_paths(model)
            return lambda layer: layer is not None and bool(pattern.search(path_of(layer)))

        return matching
    if not isinstance(layers, (list, tuple, set)) or not layers or not all(
            isinstance(name, str) for name in layers):
        raise TypeError("`layers` must be a regular expression, or a non-empty list of layer "
                        f"names or paths; received layers={layers!r}.")
    names = set(layers)

    def select(model):
        path_of = layer_paths(model)
        known = {n for layer in flat_layers(model)
                 for n in (layer.name, path_of(layer))}
        unknown = sorted(names - known)
        if unknown:
            raise ValueError(f"`layers` names {unknown}, not layers of model {model.name!r}; "
                             f"its layers are {sorted(known)[:20]}.")
        return lambda layer: layer is not None and bool(
            {layer.name, path_of(layer)} & names)

    return select


def ensure_writable(folder, message):
    """Creates `folder` and proves it writable by writing a file, or raises a one-line
    ValueError: `message` and the reason, instead of an error deep in TensorFlow later."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe_file = os.path.join(folder, ".write_check")
        with open(probe_file, "w"):
            pass
        os.remove(probe_file)
    except OSError as error:
        raise ValueError(f"{message} ({error.strerror or error}).") from None


__all__ = ["SignalMonitor", "FindingError", "Finding"]
