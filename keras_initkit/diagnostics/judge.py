"""A probe judged: its findings, and the one-step view of a model that starts silent on purpose."""
from keras import ops

from .findings import find, zero_started

# Adam's first step moves every weight by about its learning rate, whatever the gradient's
# scale (m / sqrt(v) = sign(g) at step 1); 1e-3 is Keras' and PyTorch's default rate.
ADAM_STEP = 1e-3


def judge(probe, x, y, thresholds, stepped_probe=None, result=None):
    """Probes one batch and applies the rules; returns `(result, findings, note)`.

    When kernels start at exactly zero and receive a gradient (`zero_started`:
    a zero classifier, the last layer of a SkipInit or Fixup branch), every
    signal behind them is zero until the first update, on purpose. The model
    is then judged by what one optimizer step makes of it: those kernels are
    set to Adam's first step, -ADAM_STEP * sign(gradient), the batch is probed
    again (by `stepped_probe`, default `probe`), and the weights are put back
    exactly. `note` says so; it is "" otherwise.

    Args:
        probe: A `Probe`.
        x, y: The batch (`y` may be None).
        thresholds: A `Thresholds`.
        stepped_probe: The probe for the second look (the monitor passes one that
            writes nothing to TensorBoard).
        result: `probe(x, y)`, when the caller has it already.

    Returns:
        The `ProbeResult` judged, the list of `Finding`, and the note.
    """
    result = probe(x, y) if result is None else result
    zero = zero_started(result)
    if not zero:
        return result, find(result, thresholds), ""
    second = stepped_probe or probe
    grads = dict(second(x, y, with_tensors=True).gradient_tensors)
    variables = {v.path: v for v in probe.model.trainable_variables}
    saved = {w.path: ops.convert_to_numpy(variables[w.path].value) for w in zero}
    try:
        for w in zero:
            variable = variables[w.path]
            variable.assign(ops.cast(-ADAM_STEP * ops.sign(grads[w.path]), variable.dtype))
        stepped = second(x, y)
    finally:
        for path, value in saved.items():
            variables[path].assign(value)
    silent = {w.path.rsplit("/", 1)[0] for w in zero}
    names = ", ".join(f"'{w.path}'" for w in zero[:4]) + (
        f" and {len(zero) - 4} more" if len(zero) > 4 else "")
    note = (f"{len(zero)} kernel(s) start at zero on purpose ({names}): they silence the "
            "signals behind them until the first update, so the model is judged after one "
            f"Adam step of them (each weight -{ADAM_STEP:g} * sign of its gradient).")
    return stepped, find(stepped, thresholds, silent), note
