"""What every keras_initkit initializer shares: argument checks, seeds and dtypes.

Keras 3's built-in random initializers fix their seed at construction, so one
instance called twice (or shared by two layers) returns the same tensor. Ours
derive a new seed for every call, so symmetry is broken, and an explicit
integer seed still gives the same sequence of draws in every process; a copy
made from the config (clone_model, MultiHeadAttention's sub-layers) starts
that sequence again (README, "Symmetry is broken").
"""
import inspect
import math
import numbers
import random as python_random

import keras
import ml_dtypes
import numpy as np
from keras import ops

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_MAX_SEED = 2**31 - 1


def check_number(name, value, *, positive=False, non_negative=False):
    """Returns `value` as a float, or raises a ValueError that names the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"`{name}` must be a real number; received {name}={value!r} "
            f"of type {type(value).__name__}."
        )
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range, e.g. 10**400
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be finite; received {name}={value!r}.")
    value = number
    if positive and value <= 0:
        raise ValueError(f"`{name}` must be > 0; received {name}={value}.")
    if non_negative and value < 0:
        raise ValueError(f"`{name}` must be >= 0; received {name}={value}.")
    return value


def check_choice(name, value, allowed):
    # A str first: `in` on an array or an odd object can raise instead of answering.
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; "
            f"received {name}={value!r}."
        )
    return value


def check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            "`seed` must be None or a non-negative integer; received "
            f"seed={seed!r} of type {type(seed).__name__}."
        )
    if not 0 <= seed <= 2**63 - 1:
        raise ValueError(f"`seed` must be in [0, 2**63 - 1]; received seed={seed}.")
    return int(seed)


def check_representable(name, value, dtype):
    """Refuses a value that `dtype` would truncate, wrap around, overflow to inf or flush to 0.

    A float dtype holds a non-zero value at full precision only from its smallest
    normal number up; below it the value loses bits, or becomes 0 where the
    backend flushes subnormals (TensorFlow does on CPU).
    """
    if keras.backend.is_float_dtype(dtype):
        info = ml_dtypes.finfo(dtype)
        if abs(value) > float(info.max):
            problem = f"overflows dtype={dtype}, whose largest value is {float(info.max):g}"
        elif value != 0 and abs(value) < float(info.tiny):
            problem = (f"is below the smallest normal number of dtype={dtype} "
                       f"({float(info.tiny):g}), where it loses precision or becomes 0")
        else:
            return
    else:
        low, high = (0, 1) if dtype == "bool" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        whole = isinstance(value, numbers.Integral) or (
            math.isfinite(value) and float(value) == int(value))
        if whole and low <= value <= high:
            return
        problem = f"cannot be stored exactly in dtype={dtype}, which holds whole numbers " \
                  f"from {low} to {high}"
    raise TypeError(f"`{name}`={value} {problem}; use a wider dtype or another value.")


def check_spread(name, typical, largest, dtype):
    """Refuses a random scheme's scale that `dtype` cannot hold: its typical entry
    (a std) flushed to 0 or short of bits, or its largest entry overflowing to inf."""
    check_representable(name, largest, dtype)
    if not typical > 0:  # a variance that underflowed to 0 in Python's float64
        raise TypeError(f"`{name}` gives a spread of {typical}, which dtype={dtype} cannot "
                        "hold; use a wider dtype or another value.")
    check_representable(name, typical, dtype)


def float_work_dtype(dtype):
    """Half precisions are sampled in float32 and cast: erfinv and QR need the bits."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def check_shape_argument(shape):
    """`shape` as a tuple of Python ints, or a ValueError that names it.

    Only integers count: `int()` would truncate 2.5, parse "3" and read True
    as 1, and a shape of more than 2**63 entries is beyond any backend's
    indexing (TensorFlow raises its own InvalidArgumentError).
    """
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise ValueError(f"`shape` must be a tuple of integers; received shape={shape!r}.")
    dims = tuple(int(d) for d in dims)
    if any(d < 0 for d in dims):
        raise ValueError(f"`shape` must not hold negative sizes; received shape={dims}.")
    if math.prod(dims) >= 2**63 or any(d >= 2**63 for d in dims):  # an empty one too
        raise ValueError(f"`shape` holds more than 2**63 - 1 entries, or an axis that long; "
                         f"received shape={dims}.")
    return dims


class KitInitializer(keras.initializers.Initializer):
    """Base class: validated arguments, a fresh draw per call, every float dtype.

    Subclasses set `formula` (one line, shown by `list_initializers()`),
    `random` (False for schemes that draw nothing), `min_rank`, and implement
    `generate(shape, dtype)`; `get_config()` must return every constructor
    argument.
    """

    formula = ""
    random = True
    min_rank = 0
    fills_empty_shapes = True  # a zero-sized shape gets zeros without calling `generate`

    def __init__(self, seed=None):
        self._seed = check_seed(seed)
        self._draws = 0

    def next_seed(self):
        """The integer seed of the next draw. Each call advances the sequence.

        Unseeded instances draw from Python's `random`, which
        `keras.utils.set_random_seed` seeds, so whole programs stay reproducible.
        """
        if self._seed is None:
            return python_random.randint(1, _MAX_SEED)
        state = np.random.SeedSequence([self._seed, self._draws]).generate_state(2)
        self._draws += 1
        return int(state[0]) % _MAX_SEED + 1

    @property
    def seed(self):
        """A fresh integer seed for a copy of this initializer, from a stream of its own.

        Keras' EinsumDense copies a VarianceScaling initializer with
        `config["seed"] = initializer.seed`; a new seed per read keeps two
        EinsumDense layers that share one instance from getting equal kernels,
        and the separate stream leaves this instance's own draws unchanged.
        """
        if self._seed is None:
            return python_random.randint(1, _MAX_SEED)
        self._copies = getattr(self, "_copies", 0) + 1
        state = np.random.SeedSequence([self._seed, self._copies, 1]).generate_state(1)
        return int(state[0]) % _MAX_SEED + 1

    def check_shape(self, shape):
        """Raises a ValueError for a non-empty shape the scheme cannot fill (beyond its rank)."""

    @classmethod
    def from_config(cls, config):
        """The initializer that `get_config()` describes.

        A config is checked before the constructor sees it: a hand-edited or
        hostile `.keras` file with an argument the class does not take gets a
        ValueError naming that argument and the ones allowed, not a Python
        error from inside `__init__`. Values are then checked by `__init__`.
        """
        if not isinstance(config, dict):
            raise TypeError(f"A {cls.__name__} config must be a dict; received "
                            f"{type(config).__name__}.")
        parameters = inspect.signature(cls.__init__).parameters
        allowed = [name for name, p in parameters.items() if name != "self" and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(config) - set(allowed), key=str)
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            raise ValueError(f"{cls.__name__} config has unknown argument(s) "
                             f"{', '.join(repr(k) for k in unknown)}; {cls.__name__} takes "
                             f"{', '.join(allowed) or 'no arguments'}.")
        missing = [name for name in allowed if name not in config
                   and parameters[name].default is inspect.Parameter.empty]
        if missing:  # e.g. "kit_pretrained" named as a plain string, without path and key
            raise ValueError(f"{cls.__name__} config lacks the required argument(s) "
                             f"{', '.join(repr(k) for k in missing)}.")
        return cls(**config)

    def __call__(self, shape, dtype=None):
        shape = check_shape_argument(shape)
        try:
            dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        except (TypeError, ValueError):
            raise TypeError(f"`dtype` must name a Keras dtype; received dtype={dtype!r}.") from None
        if self.random and dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{type(self).__name__} draws random floats, so `dtype` must be one of "
                f"{', '.join(FLOAT_DTYPES)}; received dtype={dtype}."
            )
        if not (dtype == "bool" or keras.backend.is_float_dtype(dtype)
                or keras.backend.is_int_dtype(dtype)):
            raise TypeError(
                f"{type(self).__name__} fills real numbers, so `dtype` must be a float, "
                f"integer or bool dtype; received dtype={dtype}."
            )
        if len(shape) < self.min_rank:
            raise ValueError(
                f"{type(self).__name__} needs a shape of rank {self.min_rank} or more; "
                f"received shape={shape} of rank {len(shape)}."
            )
        if 0 in shape and self.fills_empty_shapes:  # nothing to draw, and no fan to divide by
            return ops.zeros(shape, dtype=dtype)
        self.check_shape(shape)
        return self.generate(shape, dtype)

    def generate(self, shape, dtype):
        raise NotImplementedError

    def get_config(self):
        return {"seed": self._seed} if self.random else {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
