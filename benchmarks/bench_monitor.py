"""Step-time cost of SignalMonitor, against no callback and Keras' own TensorBoard callback.

    python benchmarks/bench_monitor.py [--rounds 11] [--quick]
        [--part overhead|segments|depth|images|all] [--image-every 1,5]

For a small MLP and a small CNN, `fit` runs with no callback, with
SignalMonitor at its defaults, with SignalMonitor(every_n_steps=16), and with
keras.callbacks.TensorBoard(histogram_freq=1), interleaved in alternating
order in one process. Each configuration is warmed up once (tracing), then
timed over whole `fit` calls; the median per step is reported. The ratios are
paired: each round's time over the same round's reference, then the median
over rounds, so a drift of the machine's speed between rounds (this 2-core VM
flips between two speeds) cancels instead of landing in one configuration.
Whole-fit times on this machine still scatter by 10-20% between runs, more
than a cheap callback costs, so the callbacks' own time is also measured: the
seconds spent inside their hooks (which run in the training thread and block
it), summed per fit; "ratio by self-time" is 1 + that over the same round's
no-callback fit. Neither settles a few percent, so SignalMonitor(every_n_steps=16)
is also measured within fits (`Interleaved`): its hooks run in every other segment of 64
steps of one fit, and each segment with it is compared with the two segments around it,
a fraction of a second apart (`--part segments` runs this measure alone; its median comes
with a bootstrap 95% interval). A forward and backward pass of the probe batch alone, every
16 steps, is measured the same way: the floor of any probe of a fixed batch. A final
2,000-step run with SignalMonitor(every_n_steps=16) samples resident memory to show it
stays flat.

`--part images` (not part of `all`): SignalMonitor(images=True) against images=False and
no callback, whole fits measured as above, at the defaults and at every_n_steps=16, with the
pictures' own time; then the time of one picture pair against the model's depth and the
history's length.

`--part depth` (issue 6, big models): the probe alone on ReLU MLPs of 50 to 500 Dense(64)
layers and on keras.applications.ResNet50(weights=None) at 64x64, batch 32: the first call
(trace and graph optimization), the median time of later calls and per layer (constant per
layer = linear in depth), and resident memory after 5 and after 40 probes (bounded: no
growth). Then `fit` with SignalMonitor(every_n_steps=10) on the 500-layer MLP and on ResNet50,
against `fit` without it (findings go to a no-op callable: a 500-layer ReLU MLP has many).
"""
import argparse
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from keras_initkit.callbacks import SignalMonitor

L = keras.layers


def mlp():
    return keras.Sequential([keras.Input((64,))] + [L.Dense(256, activation="relu")
                                                    for _ in range(4)] + [L.Dense(10)])


def cnn():
    return keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(32, 3, padding="same", activation="relu"),
        L.BatchNormalization(), L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(), L.Conv2D(64, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(10)])


def dataset(kind, n):
    rng = np.random.default_rng(0)
    shape = (n, 64) if kind == "mlp" else (n, 16, 16, 3)
    return rng.normal(size=shape).astype("float32"), rng.integers(0, 10, n).astype("int32")


def compiled(build):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def models(quick, samples):
    """`(kind, x, y, compiled model)` of the MLP and, unless `quick`, the CNN."""
    for kind, build in [("mlp", mlp), ("cnn", cnn)][: 1 if quick else 2]:
        x, y = dataset(kind, samples)
        yield kind, x, y, compiled(build)


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _MemorySampler(keras.callbacks.Callback):
    def __init__(self, every):
        super().__init__()
        self.every, self.samples, self.step = every, [], 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self.samples.append((self.step, _rss_mb()))


class _NoOpBatchEnd(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


class HookTimer:
    """Wraps every `on_*` hook a callback overrides, summing the seconds spent inside."""

    def __init__(self, callbacks):
        self.seconds = 0.0
        for callback in callbacks:
            for name in dir(callback):
                # Overridden in the class, or set on the instance (the batch-end hook of
                # SignalMonitor(on_finding="restore")).
                own = name in vars(callback)
                hook = getattr(type(callback), name, None)
                if name.startswith("on_") and (own or hook is not getattr(
                        keras.callbacks.Callback, name, None)):
                    setattr(callback, name, self._timed(getattr(callback, name)))

    def _timed(self, hook):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


class _OwnPass(keras.callbacks.Callback):
    """Every `every` steps, a forward and backward pass of a fixed batch, as the probe runs
    it (training mode, side-effect free), and nothing else: no statistics, no writes."""

    def __init__(self, model, x, y, every):
        import tensorflow as tf

        super().__init__()
        self.every, self.x, self.y = every, tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function(autograph=False)
        def own_pass(x, y):
            trainable = [v.value for v in model.trainable_variables]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                y_pred, _ = model.stateless_call(
                    trainable, [v.value for v in model.non_trainable_variables], x,
                    training=True)
                loss = loss_fn(y, y_pred)
            grads = tape.gradient(loss, trainable)
            return tf.stack([loss] + [tf.reduce_sum(g) for g in grads])

        self.own_pass = own_pass

    def on_train_batch_begin(self, batch, logs=None):
        if batch % self.every == 0:
            np.asarray(self.own_pass(self.x, self.y))


class Interleaved(keras.callbacks.Callback):
    """Runs a callback's batch hooks only in every other segment of `segment` steps of one
    fit, and time-stamps every batch start (before the callback's hook).

    Segments with the callback and without it then alternate within one fit, a
    fraction of a second apart, so the drift of the machine's speed between fits
    (larger on this VM than what a cheap callback costs) cancels. Segment 0 is a
    lead-in without the callback; odd segments have it.
    """

    def __init__(self, callback, segment):
        super().__init__()
        self.callback, self.segment, self.stamps = callback, segment, []

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def on_train_begin(self, logs=None):
        self.stamps = []
        self.callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.callback.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.stamps.append(time.perf_counter())
        if (len(self.stamps) - 1) // self.segment % 2 == 1:
            self.callback.on_train_batch_begin(batch, logs)

    def on_train_end(self, logs=None):
        self.callback.on_train_end(logs)

    def ratios(self):
        """Each inner segment with the callback: its mean step over the mean of the two
        segments around it, without."""
        steps = np.diff(self.stamps)
        means = [steps[i:i + self.segment].mean() for i in range(0, len(steps), self.segment)
                 if i + self.segment <= len(steps)]
        return [means[j] / (0.5 * (means[j - 1] + means[j + 1]))
                for j in range(3, len(means) - 1, 2)]


class InterleavedWithEnd(Interleaved):
    """`Interleaved` for a callback with a batch-end hook too (`on_finding="restore"`): Keras
    then waits for every step's logs in every segment, so the ratio is the callback's own
    time; the wait itself is the whole-fit row "no-op on_train_batch_end"."""

    def on_train_batch_end(self, batch, logs=None):
        if (len(self.stamps) - 1) // self.segment % 2 == 1:
            self.callback.on_train_batch_end(batch, logs)


def median_interval(values, draws=4000):
    """The 2.5 and 97.5 percentiles of the median of `values` resampled with replacement:
    how far another run's median may fall from this one's."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(values, (draws, len(values))), axis=1)
    return np.percentile(medians, [2.5, 97.5])


def paired(times, reference):
    """The median over rounds of each round's time over the same round's reference."""
    return statistics.median(t / r for t, r in zip(times, reference))


def deep_mlp(depth):
    return keras.Sequential([keras.Input((64,))] + [
        L.Dense(64, activation="relu", kernel_initializer="kit_he") for _ in range(depth)] +
        [L.Dense(10)], name=f"mlp{depth}")


def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10,
                                       classifier_activation=None)  # logits, as compiled()


def depth_part(rounds):
    """Probe time against depth, memory over repeated probes, and fit with the monitor."""
    import tensorflow as tf

    from keras_initkit.diagnostics import Probe

    print("| model | layers probed | weights | first call s | ms / probe | ms / layer | "
          "RSS after probe 5 MB | RSS after probe 40 MB |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name, build in [(f"MLP {d}", lambda d=d: deep_mlp(d)) for d in (50, 100, 200, 500)] + [
            ("ResNet50 64x64", resnet50)]:
        keras.utils.set_random_seed(0)
        model = build()
        shape = (32,) + tuple(model.input_shape[1:])
        x = tf.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        probe = Probe(model)
        start = time.perf_counter()
        result = probe(x)
        first = time.perf_counter() - start
        rss, times = {}, []
        for i in range(2, 41):
            start = time.perf_counter()
            probe(x)
            times.append(time.perf_counter() - start)
            rss[i] = _rss_mb()
        per_probe = 1e3 * statistics.median(times)
        layers = len(result.activations)
        print(f"| {name} | {layers} | {len(result.weights)} | {first:.1f} | {per_probe:.1f} | "
              f"{per_probe / layers:.3f} | {rss[5]:.0f} | {rss[40]:.0f} |", flush=True)

    print("\n| model | callback | ms / step | ratio to none |")
    print("|---|---|---|---|")
    logs = tempfile.mkdtemp(prefix="bench_monitor_depth_")
    for name, build in [("MLP 500", lambda: deep_mlp(500)), ("ResNet50 64x64", resnet50)]:
        model = compiled(build)
        shape = tuple(model.input_shape[1:])
        steps = 40
        x = rng.normal(size=(32 * steps,) + shape).astype("float32")
        y = rng.integers(0, 10, 32 * steps).astype("int32")
        configs = {"none": [], "SignalMonitor(every_n_steps=10)": [SignalMonitor(
            os.path.join(logs, name.split()[0]), every_n_steps=10,
            on_finding=lambda finding: None)]}
        times = {key: [] for key in configs}
        for callbacks in configs.values():  # warm-up: tracing
            model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=callbacks)
        for i in range(rounds):
            for key in (configs if i % 2 == 0 else list(reversed(configs))):
                start = time.perf_counter()
                model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=configs[key])
                times[key].append((time.perf_counter() - start) / steps)
        for key in configs:
            print(f"| {name} | {key} | {1e3 * statistics.median(times[key]):.1f} | "
                  f"{paired(times[key], times['none']):.3f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="default 11; 2 with --quick")
    parser.add_argument("--quick", action="store_true", help="the MLP only, 2 rounds")
    parser.add_argument("--part", choices=("overhead", "segments", "depth", "images", "restore",
                                           "first-batch", "all"),
                        default="all", help="segments: only the within-fit measure; images: "
                        "SignalMonitor(images=True) alone, against images=False and none")
    parser.add_argument("--image-every", default="",
                        help="with --part images: more image_every_n_probes to time at "
                             "every_n_steps=16, comma-separated (e.g. 1,5)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 11)
    print(f"keras {keras.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')}\n")
    if args.part in ("overhead", "all"):
        overhead_part(rounds, args.quick)
    if args.part == "segments":
        segments_part(rounds, args.quick)
    if args.part == "restore":
        restore_part(rounds, args.quick)
    if args.part == "first-batch":
        first_batch_part(rounds)
    if args.part == "images":
        images_part(rounds, args.quick, [int(k) for k in args.image_every.split(",") if k])
    if args.part in ("depth", "all"):
        depth_part(3 if args.quick else 5)


def overhead_part(rounds, quick):
    batch, steps = 32, 600
    print(f"batch {batch}, {steps} steps per fit, median of {rounds} rounds\n")
    print(WHOLE_FITS_HEADER)
    logs = tempfile.mkdtemp(prefix="bench_monitor_")
    for kind, x, y, model in models(quick, batch * steps):
        configs = {
            "none": [],
            # Any *_batch_end hook makes Keras dispatch callbacks in line, not on its thread
            # pool; on 2 cores the two paths differ by up to 1.7x, so both references are shown.
            "no-op on_train_batch_end": [_NoOpBatchEnd()],
            # Defaults: the probe batch is the first training batch, every 200 steps.
            "SignalMonitor() defaults": [SignalMonitor(os.path.join(logs, kind, "default"))],
            "SignalMonitor(every_n_steps=16)": [SignalMonitor(
                os.path.join(logs, kind, "every16"), every_n_steps=16)],
            "TensorBoard(histogram_freq=1)": [keras.callbacks.TensorBoard(
                os.path.join(logs, kind, "keras"), histogram_freq=1)],
        }
        print_whole_fits(kind, *timed_fits(model, x, y, configs, rounds, batch))

    segments_part(rounds, quick, batch, logs)
    memory_part(batch, logs)


WHOLE_FITS_HEADER = ("| model | callback | ms / step | ratio to none | ratio to no-op batch-end "
                     "| ratio by self-time |\n|---|---|---|---|---|---|")


def print_whole_fits(kind, times, own):
    """One table row per configuration of `timed_fits`: the median step, and the paired
    ratios to no callback, to a no-op batch-end hook and by the hooks' own time."""
    for name in times:
        print(f"| {kind} | {name} | {1e3 * statistics.median(times[name]):.2f} | "
              f"{paired(times[name], times['none']):.3f} | "
              f"{paired(times[name], times['no-op on_train_batch_end']):.3f} | "
              f"{1 + paired(own[name], times['none']):.3f} |", flush=True)


def interleaved_fits(model, x, y, rows, rounds, batch):
    """`{name: [segment ratios]}` of `Interleaved` callbacks: one warm-up `fit` each
    (tracing), then `rounds` rounds of one `fit` each, in alternating order."""
    ratios = {name: [] for name in rows}
    for callback in rows.values():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[callback])
    for i in range(rounds):
        for name in (list(rows) if i % 2 == 0 else list(reversed(rows))):
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[rows[name]])
            ratios[name] += rows[name].ratios()
    return ratios


def timed_fits(model, x, y, configs, rounds, batch):
    """One warm-up `fit` per configuration (tracing, writers), then `rounds` rounds of one
    `fit` each, in alternating order. Returns `(times, own)`: per configuration, each
    round's seconds per step, and the seconds per step spent inside its callbacks' hooks."""
    steps = len(x) // batch
    times = {name: [] for name in configs}
    timers = {name: HookTimer(callbacks) for name, callbacks in configs.items()}
    own = {name: [] for name in configs}
    for callbacks in configs.values():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
    for i in range(rounds):
        for name in (list(configs) if i % 2 == 0 else list(reversed(configs))):
            timers[name].seconds = 0.0
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=configs[name])
            times[name].append((time.perf_counter() - start) / steps)
            own[name].append(timers[name].seconds / steps)
    return times, own


def images_part(rounds, quick, image_every=()):
    """SignalMonitor(images=True) against images=False and no callback, as `overhead_part`
    measures, at the defaults and at every_n_steps=16 (and at each interval of
    `image_every`); then the time of one picture pair against the model's size."""
    batch, steps = 32, 600
    print(f"batch {batch}, {steps} steps per fit, median of {rounds} rounds; pictures at the "
          "monitor's first probe, every image_every_n_probes-th, and the last of each fit\n")
    print("| model | callback | ms / step | ratio to none | ratio by self-time | "
          "pictures per fit | ms per picture pair |")
    print("|---|---|---|---|---|---|---|")
    logs = tempfile.mkdtemp(prefix="bench_monitor_images_")
    for kind, x, y, model in models(quick, batch * steps):
        variants = {"SignalMonitor() defaults": {},
                    "SignalMonitor(images=True)": {"images": True},
                    "SignalMonitor(every_n_steps=16)": {"every_n_steps": 16},
                    "SignalMonitor(every_n_steps=16, images=True)": {"every_n_steps": 16,
                                                                    "images": True}}
        variants.update({f"SignalMonitor(every_n_steps=16, images=True, image_every_n_probes="
                         f"{k})": {"every_n_steps": 16, "images": True,
                                   "image_every_n_probes": k} for k in image_every})
        configs = {"none": []}
        configs.update({name: [SignalMonitor(os.path.join(logs, kind, str(i)), **kwargs)]
                        for i, (name, kwargs) in enumerate(variants.items())})
        pictures = {name: _PictureTimer(callbacks[0]) for name, callbacks in configs.items()
                    if callbacks and callbacks[0].images}
        times, own = timed_fits(model, x, y, configs, rounds, batch)
        for name in configs:
            timer = pictures.get(name)
            counted = (f"{timer.calls / (rounds + 1):.1f} | "
                       f"{1e3 * statistics.median(timer.seconds):.1f}") if timer else "- | -"
            print(f"| {kind} | {name} | {1e3 * statistics.median(times[name]):.2f} | "
                  f"{paired(times[name], times['none']):.3f} | "
                  f"{1 + paired(own[name], times['none']):.3f} | {counted} |", flush=True)
        for off, on in (("SignalMonitor() defaults", "SignalMonitor(images=True)"),
                        ("SignalMonitor(every_n_steps=16)",
                         "SignalMonitor(every_n_steps=16, images=True)")):
            # The pictures' own share of a step: the paired difference of the self-times.
            share = statistics.median((a - b) / r for a, b, r in
                                      zip(own[on], own[off], times["none"]))
            print(f"\n{kind}: {on} over {off}: whole fits {paired(times[on], times[off]):.3f}, "
                  f"by self-time {1 + share:.4f}", end="")
        print("\n")

    print("| layers | probes in history | profile ms | heat map ms | heat map px | "
          "picture pair, written, ms |")
    print("|---|---|---|---|---|---|")
    from keras_initkit.callbacks import signal_images

    rng = np.random.default_rng(0)
    for layers, probes in ((5, 40), (5, 1000), (500, 100), (500, 1000)):
        monitor = SignalMonitor(os.path.join(logs, f"size_{layers}_{probes}"), images=True)
        monitor._writer = __import__("tensorflow").summary.create_file_writer(monitor.log_dir)
        rms = np.exp(rng.normal(size=(layers, probes)))
        monitor.history = {"step": list(range(probes)), "activations": {
            f"layer_{i}": {"rms": list(row), "nan_count": [0.0] * probes,
                           "inf_count": [0.0] * probes} for i, row in enumerate(rms)}}
        monitor._signal = (probes - 1, rms[:, -1], rms[:, -1] / 10)
        profile = signal_images.SignalProfile()
        profile(rms[:, 0], rms[:, 0])  # the frame
        draw, heat, pair = [], [], []
        for _ in range(5):
            start = time.perf_counter()
            profile(rms[:, -1], rms[:, -1] / 10, "step")
            draw.append(time.perf_counter() - start)
            start = time.perf_counter()
            image = signal_images.heat_map(signal_images.history_table(monitor.history))
            heat.append(time.perf_counter() - start)
            monitor._pictured_step = None
            start = time.perf_counter()
            monitor._write_images()
            pair.append(time.perf_counter() - start)
        print(f"| {layers} | {probes} | {1e3 * statistics.median(draw):.1f} | "
              f"{1e3 * statistics.median(heat):.1f} | {image.shape[1]} x {image.shape[0]} | "
              f"{1e3 * statistics.median(pair[1:]):.1f} |", flush=True)


class _PictureTimer:
    """Counts a monitor's picture pairs and times each (drawing, encoding, writing)."""

    def __init__(self, monitor):
        self.calls, self.seconds = 0, []
        write = monitor._write_images

        def timed():
            start = time.perf_counter()
            write()
            self.seconds.append(time.perf_counter() - start)
            self.calls += 1

        monitor._write_images = timed


def segments_part(rounds, quick, batch=32, logs=None):
    """SignalMonitor(every_n_steps=16) and the probe batch's own pass, by `Interleaved`."""
    logs = logs or tempfile.mkdtemp(prefix="bench_monitor_")
    segments = 20  # per fit: 8 inner segments with the callback, each between two without
    print(f"\nOn and off in alternate segments of 64 steps within each fit ({rounds} fits of "
          f"{64 * segments} steps per row, rows alternating): each segment with the callback "
          "against the mean of its two neighbours without it; the median's 95% interval by "
          "bootstrap\n")
    print("| model | callback | segments | median ratio | 95% interval | quartiles |")
    print("|---|---|---|---|---|---|")
    for kind, x, y, model in models(quick, batch * 64 * segments):
        rows = {
            "SignalMonitor(every_n_steps=16)": Interleaved(SignalMonitor(
                os.path.join(logs, kind, "interleaved"), every_n_steps=16), segment=64),
            # What any probe of a fixed batch pays before its statistics: its own pass.
            "forward and backward pass of the probe batch, every 16": Interleaved(
                _OwnPass(model, x[:batch], y[:batch], every=16), segment=64),
        }
        ratios = interleaved_fits(model, x, y, rows, rounds, batch)
        for name, values in ratios.items():
            low, mid, high = np.percentile(values, [25, 50, 75])
            interval = median_interval(values)
            print(f"| {kind} | {name} | {len(values)} | {mid:.3f} | {interval[0]:.3f}-"
                  f"{interval[1]:.3f} | {low:.3f}-{high:.3f} |", flush=True)


def restore_part(rounds, quick, batch=32):
    """SignalMonitor(on_finding="restore") against the same monitor with "warn", no callback
    and a no-op batch-end hook: whole fits, then within fits; then the copy's own time."""
    logs = tempfile.mkdtemp(prefix="bench_restore_")
    steps = 600
    print(f"on_finding='restore', whole fits: batch {batch}, {steps} steps per fit, median of "
          f"{rounds} rounds\n")
    print(WHOLE_FITS_HEADER)
    for kind, x, y, model in models(quick, batch * steps):
        def monitor(name, **options):
            return [SignalMonitor(os.path.join(logs, kind, name), **options)]

        configs = {
            "none": [],
            "no-op on_train_batch_end": [_NoOpBatchEnd()],
            "SignalMonitor() defaults": monitor("default"),
            "SignalMonitor(on_finding='restore')": monitor("restore", on_finding="restore"),
            "SignalMonitor(every_n_steps=16)": monitor("every16", every_n_steps=16),
            "SignalMonitor(every_n_steps=16, on_finding='restore')": monitor(
                "restore16", every_n_steps=16, on_finding="restore"),
            "the same, keep='device'": monitor("restore16d", every_n_steps=16,
                                               on_finding="restore", keep="device"),
        }
        print_whole_fits(kind, *timed_fits(model, x, y, configs, rounds, batch))

    segments = 20
    print(f"\nWithin fits ({rounds} fits of {64 * segments} steps per row): segments of 64 "
          "steps with the monitor's hooks against the two around them without\n")
    print("| model | callback | segments | median ratio | 95% interval |")
    print("|---|---|---|---|---|")
    for kind, x, y, model in models(quick, batch * 64 * segments):
        rows = {"every_n_steps=16 (on_finding='warn')": Interleaved(SignalMonitor(
            os.path.join(logs, kind, "inter_warn"), every_n_steps=16), segment=64)}
        rows.update({f"every_n_steps=16, on_finding='restore', keep='{keep}'": InterleavedWithEnd(
            SignalMonitor(os.path.join(logs, kind, f"inter_{keep}"), every_n_steps=16,
                          on_finding="restore", keep=keep), segment=64)
            for keep in ("host", "device")})
        ratios = interleaved_fits(model, x, y, rows, rounds, batch)
        for name, values in ratios.items():
            low, high = median_interval(values)
            print(f"| {kind} | {name} | {len(values)} | {np.median(values):.3f} | "
                  f"{low:.3f}-{high:.3f} |", flush=True)
    copy_cost(quick)


def first_batch_part(rounds, steps=20):
    """What taking the probe batch from the train function's first call costs a fit: a
    fresh MLP's first fit (its trace included) on a shuffled tf.data pipeline, with
    SignalMonitor(probe_data=...) against SignalMonitor() in alternate rounds."""
    import tensorflow as tf

    x, y = dataset("mlp", 32 * steps)
    print(f"\nThe first fit of a fresh MLP ({steps} steps of 32, a shuffled tf.data "
          f"pipeline), median of {rounds} alternating rounds\n")
    print("| probe batch | first fit s | ratio |")
    print("|---|---|---|")
    logs = tempfile.mkdtemp(prefix="bench_first_")
    times = {"probe_data=x[:32]": [], "none (the first batch fit takes)": []}
    for round_ in range(rounds):
        for name in times:
            model = compiled(mlp)
            data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(32)
            monitor = SignalMonitor(os.path.join(logs, f"{round_}{len(name)}"), **(
                {"probe_data": (x[:32], y[:32])} if name.startswith("probe_data") else {}))
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, callbacks=[monitor])
            times[name].append(time.perf_counter() - start)
    for name, seconds in times.items():
        print(f"| {name} | {statistics.median(seconds):.3f} | "
              f"{paired(seconds, times['probe_data=x[:32]']):.3f} |")


def copy_cost(quick, repeats=21):
    """The copy a healthy probe keeps (weights and Adam's two moments), host and device:
    its own read (the fallback `take()`; the monitor's probe reads the values in its own
    call), and what it adds to the next training step, which writes new buffers for the
    variables where the copy holds the old ones; paired rounds of a step after a `take`
    against a step after none."""
    from keras_initkit.callbacks.run_guard import Snapshot

    print(f"\nThe copy of one healthy probe (Adam: weights and two moments), median of "
          f"{repeats} paired rounds\n")
    print("| model | bytes | keep | read ms | next step ms, after none | after a copy | "
          "copy's cost / step |")
    print("|---|---|---|---|---|---|---|")
    builds = [("mlp", mlp, (64,)), ("cnn", cnn, (16, 16, 3))]
    if not quick:
        builds.append(("ResNet50 64x64", resnet50, (64, 64, 3)))
    for kind, build, shape in builds:
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x = np.random.default_rng(0).normal(size=(32,) + shape).astype("float32")
        y = np.zeros(len(x), "int32")
        for _ in range(2):  # built, traced
            model.train_on_batch(x, y)

        def step():
            start = time.perf_counter()
            model.train_on_batch(x, y)  # returns NumPy logs: the step has run
            return time.perf_counter() - start

        for keep in ("host", "device"):
            snapshot, reads, plain, after = Snapshot(model, keep), [], [], []
            for _ in range(repeats):
                plain.append(step())
                start = time.perf_counter()
                snapshot.take(0)
                reads.append(time.perf_counter() - start)
                after.append(step())
                snapshot.values = None  # as when a copy is replaced by the next one
            extra = statistics.median(a - p for a, p in zip(after, plain))
            print(f"| {kind} | {snapshot.nbytes / 1e6:.1f} MB | {keep} | "
                  f"{1e3 * statistics.median(reads):.2f} | {1e3 * statistics.median(plain):.2f} "
                  f"| {1e3 * statistics.median(after):.2f} | "
                  f"{(statistics.median(reads) + extra) / statistics.median(plain):.3f} |",
                  flush=True)


def memory_part(batch, logs):
    """Resident memory over a 2,000-step fit with SignalMonitor(every_n_steps=16)."""
    x, y = dataset("mlp", batch * 500)
    model = compiled(mlp)
    sampler = _MemorySampler(250)
    monitor = SignalMonitor(os.path.join(logs, "memory"), every_n_steps=16,
                            on_finding=lambda finding: None)
    model.fit(x, y, batch_size=batch, epochs=4, verbose=0, callbacks=[monitor, sampler])
    rss = [mb for _, mb in sampler.samples]
    print(f"\nmemory over {sampler.step} steps with SignalMonitor(every_n_steps=16): "
          f"{rss[0]:.0f} MB at step {sampler.samples[0][0]}, {rss[-1]:.0f} MB at step "
          f"{sampler.samples[-1][0]} (change {rss[-1] - rss[0]:+.1f} MB); "
          f"history holds {len(monitor.history['step'])} probes\n")


if __name__ == "__main__":
    main()
