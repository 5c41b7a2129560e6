"""The controlled experiment behind `initkit compare`: one base model, one dataset, only the
initializer varies; over seeds, depths and architectures, in parallel worker processes.

- `comparison`: `compare()`, its cells and the summary over seeds (`Comparison`).
- `data`: the bundled digits or an `.npz`, a saved model, and the checks that they fit.
- `parallel`: cells in worker processes. `progress`: the progress bar.
- `figures`: learning curves, the signal at initialization, the depth sweep.
- `html_report`: everything in one self-contained `report.html`.
"""
from ..base_models import mlp
from .comparison import (
    ARCH_SCHEMES,
    ARCHS,
    COLUMNS,
    DEFAULT_SCHEMES,
    PROBE_SIZE,
    SPECIAL_SCHEMES,
    Comparison,
    compare,
    resolve_scheme,
)
from .data import (
    check_fits,
    check_out,
    check_samples,
    hold_out,
    is_classification,
    load_data,
    load_model,
    loss_for,
    read_npz,
)

__all__ = ["compare", "Comparison", "resolve_scheme", "ARCHS", "ARCH_SCHEMES", "COLUMNS",
           "DEFAULT_SCHEMES", "PROBE_SIZE", "SPECIAL_SCHEMES", "check_fits", "check_out",
           "check_samples", "hold_out", "is_classification", "load_data", "load_model",
           "loss_for", "read_npz", "mlp"]
