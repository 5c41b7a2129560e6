"""Every argument of every built-in initializer, given each value of a fixed table of hostile
and edge values in turn: the hypothesis tests try values in combination, and may not draw a
given one; this table tries every one, on every float dtype."""
import inspect
import math

import numpy as np
import pytest
from initializer_cases import EDGE_NUMBERS, FLOATS, MISSING_FILE, check_promise, fit_shape, to_numpy

from keras_initkit import initializers as I
from keras_initkit.registry import BUILTIN_ALIASES

CLASSES = sorted(set(BUILTIN_ALIASES.values()), key=lambda c: c.__name__)
VALUES = [None, True, False, 0, 1, -1, 2, 0.5, float("nan"), float("inf"), -float("inf"), "abc",
          "", "relu", "fan_avg", "uniform", "kit_he", "orthonormal", [1], [0, 1], [-1], {},
          {"negative_slope": 0.1}, {"alpha": 1e300}, 1j, b"x", np.array([1.0, 2.0]),
          np.float32(0.5), np.int64(3), np.bool_(True), object(), *EDGE_NUMBERS]
REQUIRED = {I.Pretrained: {"path": MISSING_FILE + ".npz", "key": "w"}}
# What an argument needs beside it to be valid at all.
COMPANIONS = {"input_axes": {"output_axes": [3]}, "output_axes": {"input_axes": [0, 1, 2]},
              "activation_params": {"activation": "leaky_relu"}}
SHAPES = [(3, 3, 4, 4), (48, 48)]  # a conv kernel, and enough draws for the moments


def cases():
    for cls in CLASSES:
        for name in inspect.signature(cls.__init__).parameters:
            if name != "self":
                yield pytest.param(cls, name, id=f"{cls.__name__}-{name}")


@pytest.mark.parametrize("cls,name", list(cases()))
def test_each_value_gives_a_tensor_that_keeps_the_promise_or_a_named_error(cls, name):
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    tensors = 0
    for value in VALUES:
        try:
            init = cls(**{**REQUIRED.get(cls, {}), **COMPANIONS.get(name, {}), name: value})
        except (ValueError, TypeError) as error:
            assert name in str(error), (value, str(error))
            continue
        for shape in SHAPES:
            shape = fit_shape(cls, init.get_config(), shape)
            if math.prod(shape) > 10**5:  # a huge ICNR scale asks for a huge kernel
                continue
            for dtype in FLOATS:
                try:
                    x = init(shape, dtype=dtype)
                except (ValueError, TypeError) as error:
                    assert any(n in str(error) for n in names + ["shape", "dtype"]), (
                        value, shape, dtype, str(error))
                    continue
                check_promise(cls, init.get_config(), shape, dtype, to_numpy(x, shape))
                tensors += 1
    # Some value of the table is a valid one for every argument but Pretrained's file.
    assert tensors or cls is I.Pretrained
