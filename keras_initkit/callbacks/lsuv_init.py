"""LSUVInit: layer-sequential unit-variance initialization when training starts."""
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
        x: One batch of inputs, as the model takes them.
        target_var, tol, max_iter, orthonormal, seed: As in `keras_initkit.lsuv`.

    Attributes:
        report: The `lsuv` report (per layer: iterations, variance, converged),
            None until training begins.

    Example:
    >>> model.fit(x, y, callbacks=[keras_initkit.callbacks.LSUVInit(x[:256])])
    """

    def __init__(self, x, *, target_var=1.0, tol=0.1, max_iter=10, orthonormal=True, seed=None):
        super().__init__()
        check_sample(x)
        check_lsuv_args(target_var, tol, max_iter, orthonormal, seed)  # at construction
        self.x = x
        self.options = dict(target_var=target_var, tol=tol, max_iter=max_iter,
                            orthonormal=orthonormal, seed=seed)
        self.report = None

    def on_train_begin(self, logs=None):
        if self.report is None:
            self.report = lsuv(self.model, self.x, **self.options)
