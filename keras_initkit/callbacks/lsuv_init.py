"""LSUVInit: layer-sequential unit-variance initialization when training starts."""
import warnings

import keras

from ..model_init.lsuv import check_lsuv_args, check_sample, lsuv


class LSUVInit(keras.callbacks.Callback):
    """Runs `keras_initkit.lsuv` on the model at `on_train_begin`.

    Mishkin & Matas 2016: orthonormal kernels, then each Dense and convolution
    layer rescaled in depth order until its linear output has variance
    `target_var` on the batch `x`. It runs once, at the first `fit()` call;
    later calls keep the trained weights.

    Under a `tf.distribute` strategy it sets every replica's copy; on a
    multi-worker job each worker runs it on its own copies, so give every
    worker the same `x` and the same integer `seed`.

    Args:
        x: One batch of inputs, as the model takes them, or a `tf.data.Dataset` or
            `keras.utils.PyDataset` whose first batch's inputs are used.
        target_var, tol, max_iter, orthonormal, seed: As in `keras_initkit.lsuv`.

    Attributes:
        report: The `lsuv` report (per layer: iterations, variance, converged),
            None until training begins, False when the model had trained already
            (its optimizer's step count above 0: LSUV is skipped with a warning).

    Example:
    >>> model.fit(x, y, callbacks=[keras_initkit.callbacks.LSUVInit(x[:256])])
    """

    def __init__(self, x, *, target_var=1.0, tol=0.1, max_iter=10, orthonormal=True, seed=None):
        super().__init__()
        x = check_sample(x)  # at construction, not mid-fit; a dataset gives its first batch
        check_lsuv_args(target_var, tol, max_iter, orthonormal, seed)
        self.x = x
        self.options = dict(target_var=target_var, tol=tol, max_iter=max_iter,
                            orthonormal=orthonormal, seed=seed)
        self.report = None

    def on_train_begin(self, logs=None):
        if self.report is not None:
            return
        optimizer = getattr(self.model, "optimizer", None)
        steps = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer else 0
        if steps:  # LSUV starts a model; it would wipe the weights this one has learned
            warnings.warn(
                f"LSUVInit: model {self.model.name!r} has trained {steps} steps already, so "
                "LSUV did not run (it would overwrite the trained weights). To re-initialize "
                "it anyway, call keras_initkit.lsuv(model, x) before fit.", stacklevel=2)
            self.report = False
            return
        self.report = lsuv(self.model, self.x, **self.options)
