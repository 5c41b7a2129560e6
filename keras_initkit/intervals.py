"""What several seeds say: a mean with its Student-t confidence interval, and a paired test.

`initkit compare --seeds N` trains every scheme once per seed. A scheme's final accuracy is
reported as mean +- the half-width of its 95% t-interval over seeds, and a scheme counts as
indistinguishable from the best when the two-sided paired t-test over seeds (the same seeds,
so the same batch orders, pair the runs) gives p >= 0.05 (Student 1908; scipy's
`ttest_rel`).
"""
import math

import numpy as np
import scipy.stats


def t_interval(values, confidence=0.95):
    """`(mean, half_width)` of the Student-t confidence interval of the mean of `values`.

    Args:
        values: The finite numbers, one per seed.
        confidence: In (0, 1).

    Returns:
        `(mean, half_width)`: `mean +- half_width` holds the true mean with probability
        `confidence` under normal errors; `half_width` is None for fewer than 2 values.
        `(None, None)` when there are no values.

    Example:
    >>> t_interval([0.91, 0.93, 0.92])  # (0.92, 0.0248...)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1); received confidence={confidence!r}.")
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if values.size == 0:
        return None, None
    mean = float(values.mean())
    if values.size < 2:
        return mean, None
    sem = float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, float(scipy.stats.t.ppf(0.5 + confidence / 2, values.size - 1)) * sem


def paired_p(a, b):
    """The two-sided p-value of the paired t-test that `a` and `b` (same seeds) have one mean.

    Returns 1.0 when every pair is equal (no evidence of a difference), None for fewer
    than 2 pairs or a missing value.
    """
    if len(a) != len(b) or len(a) < 2 or any(
            v is None or not math.isfinite(v) for v in list(a) + list(b)):
        return None
    diff = np.asarray(a, float) - np.asarray(b, float)
    if not diff.any():
        return 1.0
    if np.ptp(diff) == 0:  # a constant nonzero difference: certain, t is infinite
        return 0.0
    return float(scipy.stats.ttest_rel(a, b).pvalue)
