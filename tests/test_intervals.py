"""The statistics of `compare --seeds`: against scipy on fixed numbers."""
import math

import numpy as np
import pytest
import scipy.stats

from keras_initkit.intervals import paired_p, t_interval

VALUES = [0.912, 0.934, 0.921, 0.905, 0.941]


def test_t_interval_is_scipys():
    low, high = scipy.stats.t.interval(0.95, len(VALUES) - 1, loc=np.mean(VALUES),
                                       scale=scipy.stats.sem(VALUES))
    mean, half = t_interval(VALUES)
    assert mean == pytest.approx((low + high) / 2) and half == pytest.approx((high - low) / 2)
    # By hand for three values: t(0.975, 2) = 4.302652729911275.
    mean, half = t_interval([1.0, 2.0, 4.0])
    assert half == pytest.approx(4.302652729911275 * math.sqrt(7 / 3) / math.sqrt(3))
    assert t_interval([0.5]) == (0.5, None) and t_interval([]) == (None, None)
    assert t_interval([1.0, None, float("nan"), 3.0])[0] == 2.0
    with pytest.raises(ValueError, match="confidence"):
        t_interval(VALUES, confidence=1.0)


def test_paired_p_is_scipys_paired_t_test():
    other = [0.901, 0.929, 0.915, 0.899, 0.930]
    assert paired_p(VALUES, other) == pytest.approx(scipy.stats.ttest_rel(VALUES, other).pvalue)
    assert paired_p(VALUES, VALUES) == 1.0
    assert paired_p([1.0, 2.0], [0.5, 1.5]) == 0.0  # the same gain on every seed
    assert paired_p([1.0], [2.0]) is None and paired_p([1.0, None], [1.0, 2.0]) is None
