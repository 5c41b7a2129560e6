"""DiagnosisReport: the findings and the per-layer numbers of one probe, as table, dict or plot."""
import math

from ..activations import activation_name


def _clean(value):
    """JSON has no NaN or Inf: they become None."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


class DiagnosisReport:
    """What `keras_initkit.diagnose` found.

    Attributes:
        healthy: True when no finding is of severity "error" (warnings alone
            leave a model healthy: it trains, worse).
        findings: The list of `Finding`, errors and warnings.
        note: How the model was judged, when not as it stands (a model whose
            kernels start at zero on purpose is judged after one Adam step of
            them); "" otherwise.
        layers: One dict per layer output, in the order the layers ran: `layer`
            (name), `path`, `type`, `activation`, the activation statistics
            (`mean`, `std`, `rms`, `min`, `max`, `zero_fraction`, `dead_fraction`,
            `saturated_fraction`, `nan_count`, `inf_count`), the backward signal
            `grad_rms` (RMS of the loss gradient with respect to the output),
            `token_cosine` and `attention_entropy` / `attention_max_entropy`
            (-1 where they do not apply), and `grad_norm`, the gradient norm
            of the layer's kernel (None for a layer without one).
        weights: One dict per trainable weight: `weight`, `layer` and the
            weight and gradient statistics.
        loss: The loss the gradients are of (the surrogate without `y`).
    """

    def __init__(self, result, findings, thresholds, note=""):
        self.findings = list(findings)
        self.healthy = not any(f.severity == "error" for f in self.findings)
        self.note = note
        self.loss = result.loss
        self.thresholds = thresholds
        kernel_grad = {}
        for weight_path, layer, s, *_ in result.weights:
            if layer is not None and not weight_path.endswith(("bias", "gamma", "beta")):
                kernel_grad.setdefault(id(layer), s["grad_norm"])
        self.layers = [{"layer": layer.name, "path": path, "type": type(layer).__name__,
                        "activation": activation_name(layer), **s,
                        "grad_norm": kernel_grad.get(id(layer))}
                       for path, layer, s, *_ in result.activations]
        self.weights = [{"weight": path, "layer": layer.name if layer is not None else None, **s}
                        for path, layer, s, *_ in result.weights]

    def table(self):
        """A plain-text table, one row per layer, with the kinds of finding at each."""
        kinds = {}
        for f in self.findings:
            kinds.setdefault(f.path or f.layer, []).append(
                f.kind + ("(grad)" if f.signal == "gradient" else "")
                + ("" if f.severity == "error" else "?"))
        header = (f"{'layer':<28}{'type':<20}{'act rms':>10}{'back rms':>10}{'dead':>7}"
                  f"{'sat':>7}{'grad norm':>11}  findings")
        lines = [header, "-" * len(header)]
        for row in self.layers:
            grad = row["grad_norm"]
            lines.append(
                f"{row['layer'][:27]:<28}{row['type'][:19]:<20}{row['rms']:>10.3g}"
                f"{row['grad_rms']:>10.3g}"
                f"{100 * row['dead_fraction']:>6.0f}%{100 * row['saturated_fraction']:>6.0f}%"
                f"{grad if grad is not None else float('nan'):>11.3g}  "
                f"{', '.join(kinds.pop(row['path'], []) or kinds.pop(row['layer'], []))}")
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = len(self.findings) - errors
        verdict = ("healthy" if self.healthy else f"{errors} error(s)") + (
            f", {warnings} warning(s) (marked ? above)" if warnings else "")
        lines.append(f"\n{verdict}")
        if self.note:
            lines.append(self.note)
        lines += [f"- {f.severity} [{f.kind}/{f.signal}] {f.message}" for f in self.findings]
        return "\n".join(lines)

    def to_dict(self):
        """Everything in the report as plain, JSON-serializable Python (NaN and Inf as None)."""
        return {
            "healthy": self.healthy,
            "note": self.note,
            "loss": _clean(self.loss),
            "findings": [f.to_dict() for f in self.findings],
            "layers": [{k: _clean(v) for k, v in row.items()} for row in self.layers],
            "weights": [{k: _clean(v) for k, v in row.items()} for row in self.weights],
            "thresholds": dict(vars(self.thresholds)),
        }

    def plot(self):
        """The signal-propagation picture: activation RMS and backward signal RMS per layer.

        Returns:
            A matplotlib `Figure` with two log-scale panels; layers with a
            finding are marked in red.
        """
        from matplotlib.figure import Figure

        figure = Figure(figsize=(10, 6), constrained_layout=True)
        top, bottom = figure.subplots(2, 1, sharex=True)
        flagged = {f.path or f.layer for f in self.findings}
        depth = range(len(self.layers))
        for axis, key, label in ((top, "rms", "activation RMS"),
                                 (bottom, "grad_rms", "backward signal RMS\n(dloss / d output)")):
            points = [(i, row[key]) for i, row in zip(depth, self.layers)
                      if row[key] is not None and math.isfinite(row[key]) and row[key] > 0]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3)
                bad = [(i, v) for i, v in points if self.layers[i]["path"] in flagged
                       or self.layers[i]["layer"] in flagged]
                if bad:
                    axis.plot(*zip(*bad), "o", color="red", label="finding")
                    axis.legend()
                axis.set_yscale("log")
            axis.set_ylabel(label)
            axis.grid(True, which="both", alpha=0.3)
        bottom.set_xlabel("layer (order of depth)")
        top.set_title(("healthy" if self.healthy else "unhealthy") + (
            ": " + ", ".join(sorted({f"{f.kind} ({f.severity})" for f in self.findings}))
            if self.findings else ""))
        return figure

    def __repr__(self):
        return (f"DiagnosisReport(healthy={self.healthy}, findings={len(self.findings)}, "
                f"layers={len(self.layers)})")
