"""How far each weight moved between two probes of `SignalMonitor`: the update ratios."""
import keras
import numpy as np

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
        self.forget()

    def forget(self):
        """The weights jumped (a restore): the next probe starts a new baseline."""
        self.before = self.step = self.paths = None

    def __call__(self, model, step):
        """`WeightUpdate`s since the last call (none at the first, or where no step was
        taken), and keeps this step's copy."""
        weights = [w for w in model.weights
                   if w.trainable or (len(w.shape) >= 2 and "float" in str(w.dtype))]
        paths = [w.path for w in weights]
        updates = []
        if self.before is not None and self.paths == paths and step > self.step:
            ops = keras.ops
            # One transfer for all: the squared norms of each difference and each baseline.
            squares = ops.convert_to_numpy(ops.stack([
                ops.stack([ops.sum(ops.square(ops.cast(w.value, "float32") - b)),
                           ops.sum(ops.square(b))])
                for w, b in zip(weights, self.before)])).astype(np.float64)
            steps = step - self.step
            for w, (moved, base) in zip(weights, squares):
                ratio = float(np.sqrt(moved / base) / steps) if base > 0 else float("nan")
                # NaN moved: a diverged weight, not a frozen one.
                updates.append(WeightUpdate(w.path, _owner(w.path), ratio, bool(moved != 0),
                                            bool(w.trainable), len(w.shape) >= 2, steps))
        self.before = [keras.ops.cast(keras.ops.copy(w.value), "float32") for w in weights]
        self.step, self.paths = step, paths
        return updates
