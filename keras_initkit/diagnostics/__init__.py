"""Diagnostics: will this network train, and if not, why?

`diagnose(model, x)` probes one batch (activations and gradients of every
layer, side-effect free), applies the rules of `findings`, and returns a
`DiagnosisReport`.
"""
import dataclasses

import keras

from .batch import check_batch_sizes, one_batch
from .findings import KINDS, SEVERITIES, SIGNALS, Finding, Thresholds, nonfinite_frozen_weights
from .judge import ADAM_STEP, judge
from .probe import LayerRow, Probe, ProbeResult, WeightRow, warn_once
from .report import DiagnosisReport

__all__ = ["diagnose", "judge", "DiagnosisReport", "Finding", "Thresholds", "Probe",
           "ProbeResult", "LayerRow", "WeightRow", "KINDS", "SIGNALS", "SEVERITIES",
           "ADAM_STEP"]


# The probes of a model, kept on the model itself so that they go with it: a dictionary
# keyed by the model would keep it alive through the probe's own reference to it.
_CACHE = "_keras_initkit_probes"


def diagnose(model, x, y=None, *, loss=None, **thresholds):
    """Diagnoses a model at its current weights, on one batch, without training it.

    Runs the probe in training mode (BatchNormalization uses batch
    statistics, as in training) and leaves no trace: weights, moving
    statistics and RNG states are unchanged. With `y`, gradients are of the
    model's compiled loss (or `loss=`); without `y`, of a surrogate loss, the
    mean of the outputs times a fixed standard-normal direction, which sends a
    unit-scale signal into every output whatever the output's own scale.

    Args:
        model: A built Keras model (TensorFlow, JAX or PyTorch backend).
        x: One batch of inputs, as the model takes them, or a `tf.data.Dataset`
            or `keras.utils.PyDataset` whose first batch (`x` or `(x, y)`) is
            used.
        y: Optional targets for the batch.
        loss: Optional loss for `y` when the model is not compiled.
        **thresholds: Any field of `Thresholds` (`vanishing_ratio`,
            `exploding_ratio`, `layer_gain`, `dead_fraction`, `saturated_fraction`,
            `saturation_threshold`, `gradient_vanishing_ratio`,
            `gradient_exploding_ratio`, `gradient_floor`); each default and its
            source is documented there.

    A kernel that starts at zero on purpose (a Fixup or ViT classifier, the
    last layer of a SkipInit branch) silences every signal behind it until the
    first update; such a model is judged after one Adam step of those kernels
    (`judge`), and the report's `note` says so.

    Returns:
        A `DiagnosisReport` with `.healthy` (no finding of severity "error"),
        `.findings`, `.layers`, `.note`, `.table()`, `.to_dict()` and `.plot()`.

    Example:
    >>> report = keras_initkit.diagnose(model, x_batch)
    >>> print(report.table())
    >>> report.findings[0].message
    "Activations vanishing with depth: at layer 'dense_12' ... use kit_he for ReLU layers"
    """
    limits = thresholds_from(thresholds, "diagnose()")
    x, batch_y = one_batch(x, "x", pairs=False)
    y = batch_y if y is None else one_batch(y, "y", pairs=False)[0]
    check_batch_sizes(x, y, "`x` and `y` hold")
    probe = cached_probe(model, loss, limits.saturation_threshold)
    result, findings, note = judge(probe, x, y, limits)
    findings = findings + nonfinite_frozen_weights(model, findings)
    if not result.activations:
        warn_once(f"No layer output of {model.name!r} could be reached; the report holds "
                  "weights and gradients only.")
    return DiagnosisReport(result, findings, limits, note)


def thresholds_from(values, caller):
    """`Thresholds(**values)`, an unknown name refused with the allowed ones listed."""
    allowed = {f.name for f in dataclasses.fields(Thresholds)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise TypeError(f"{caller} got unknown threshold(s) {unknown}; allowed: "
                        f"{', '.join(sorted(allowed))}.")
    return Thresholds(**values)


def cached_probe(model, loss=None, saturation_threshold=0.97):
    """A `Probe` of `model` without an in-graph hook, kept with the model for reuse."""
    # The probe keeps `loss` alive, so its id is not reused while the probe is cached.
    key = (loss if isinstance(loss, (str, type(None))) else id(loss), saturation_threshold)
    if not isinstance(model, keras.Model):
        return Probe(model, loss=loss, saturation_threshold=saturation_threshold)  # it refuses
    probes = vars(model).get(_CACHE)
    if probes is None:
        probes = {}
        object.__setattr__(model, _CACHE, probes)  # not a tracked attribute: no weights in it
    if key not in probes:
        probes[key] = Probe(model, loss=loss, saturation_threshold=saturation_threshold)
    return probes[key]
