"""Every built-in initializer, on random shapes, dtypes and arguments, hostile ones included:
a tensor of the requested shape and dtype that keeps the scheme's promise, or a ValueError or
TypeError that names what was wrong. No other exception, and no silent inf, NaN or wrong law."""
import inspect
import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from initializer_cases import (
    COVERED,
    DTYPES,
    FLOATS,
    HOSTILE,
    HOSTILE_SHAPES,
    MIN_N,
    NUMBERS,
    NUMERIC,
    check_promise,
    fit_shape,
    rounded,
    shapes,
    to_numpy,
    valid_kwargs,
)

import keras_initkit
from keras_initkit import initializers as I
from keras_initkit.registry import BUILTIN_ALIASES

CLASSES = sorted(set(BUILTIN_ALIASES.values()), key=lambda c: c.__name__)
# derandomize: the same examples on every run and machine, so CI is reproducible;
# no database, so nothing is written into the working tree.
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
HOSTILE_EXAMPLES = 100  # per class
EXTREME_EXAMPLES = 60  # per class with numeric arguments
STATS_EXAMPLES = 25  # per class
GET_EXAMPLES = 200


def parameters(cls):
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def test_every_registered_alias_is_a_class_under_test():
    registered = {info.alias: info.cls for info in keras_initkit.list_initializers()}
    assert BUILTIN_ALIASES.items() <= registered.items()
    assert set(CLASSES) <= COVERED  # a class added later without a case fails here


def allocatable(shape):
    """False for a shape that is valid but too big to allocate here (an ICNR scale of 10**6
    asks for a huge kernel): running out of memory is the backend's error, not a bad
    argument. Shapes that are not integer tuples, or beyond 2**63 entries, must be refused."""
    try:
        dims = [d for d in shape if isinstance(d, int) and not isinstance(d, bool)]
    except TypeError:
        return True
    return len(dims) < len(shape) or math.prod(dims) <= 10**5 or math.prod(dims) >= 2**63


def names_one_of(error, names):
    message = str(error)
    assert any(name in message for name in names), (type(error).__name__, message, names)


def drawn_or_refused_by_name(cls, init, shape, dtype):
    """`init(shape, dtype)`, or None after checking that its error names an argument."""
    try:
        return init(shape, dtype=dtype)
    except (ValueError, TypeError) as error:
        names_one_of(error, ["shape", "dtype", *parameters(cls)])
        event("refused at call")
        return None


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=HOSTILE_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_any_arguments_shape_and_dtype_give_a_tensor_or_a_named_error(cls, data):
    # Valid arguments, then up to two of them (given or not) replaced by hostile values:
    # one bad argument at a time is what gets through the checks least noticed.
    kwargs = data.draw(valid_kwargs(cls, rank=data.draw(st.integers(0, 5))), label="valid")
    names = parameters(cls)
    count = min(len(names), data.draw(st.sampled_from([0, 0, 1, 1, 2]), label="how many bad"))
    bad = data.draw(st.lists(st.sampled_from(names), min_size=count, max_size=count,
                             unique=True) if count else st.just([]), label="hostile arguments")
    for name in bad:
        kwargs[name] = data.draw(HOSTILE, label=name)
    try:
        init = cls(**kwargs)
    except (ValueError, TypeError) as error:
        names_one_of(error, parameters(cls))  # the one given badly, or a required one left out
        event("refused at construction")
        return
    fitting = shapes.map(lambda s: fit_shape(cls, init.get_config(), s))
    shape = data.draw(st.one_of(fitting, fitting, shapes, HOSTILE_SHAPES), label="shape")
    assume(allocatable(shape))
    dtype = data.draw(DTYPES, label="dtype")
    x = drawn_or_refused_by_name(cls, init, shape, dtype)
    if x is None:
        return
    expected = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
    assert tuple(x.shape) == tuple(shape)
    assert keras.backend.standardize_dtype(x.dtype) == expected
    check_promise(cls, init.get_config(), tuple(shape), expected, to_numpy(x, shape))
    event("a tensor" + (" with moments tested" if math.prod(shape) >= MIN_N else ""))


@pytest.mark.parametrize("cls", sorted(NUMERIC, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
@settings(max_examples=EXTREME_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_numbers_at_the_edges_give_a_finite_tensor_or_a_named_error(cls, data):
    # A finite number can still overflow (1e308 * 6) or vanish (1e-300 in float32) inside
    # the computation: the result is then refused, never inf, NaN or all zeros.
    kwargs = data.draw(valid_kwargs(cls, rank=4), label="valid")
    for name in NUMERIC[cls]:  # each numeric argument at an edge, or as it was
        if data.draw(st.booleans(), label=f"{name} at an edge"):
            kwargs[name] = data.draw(NUMBERS, label=name)
    if cls is I.VarianceScaling and data.draw(st.booleans(), label="extreme gain"):
        kwargs["activation"], name = data.draw(st.sampled_from(
            [("leaky_relu", "negative_slope"), ("elu", "alpha")]), label="activation")
        kwargs["activation_params"] = {name: data.draw(NUMBERS, label=name)}
    try:
        init = cls(**kwargs)
    except (ValueError, TypeError) as error:  # (a gain's own parameter may be the one named)
        names_one_of(error, parameters(cls) + list(kwargs.get("activation_params") or ()))
        return
    shape = fit_shape(cls, init.get_config(), data.draw(shapes, label="shape"))
    assume(allocatable(shape))
    dtype = data.draw(st.sampled_from(FLOATS), label="dtype")
    x = drawn_or_refused_by_name(cls, init, shape, dtype)
    if x is None:
        return
    check_promise(cls, init.get_config(), shape, dtype, to_numpy(x, shape))
    event("a tensor")


@st.composite
def sized_shapes(draw, rank):
    """A shape of this rank with 2,000 entries or more, so that its moments are tested."""
    if rank == 2:
        return (draw(st.integers(45, 300)), draw(st.integers(45, 300)))
    spatial = tuple(draw(st.sampled_from([1, 2, 3, 5])) for _ in range(rank - 2))
    channels = draw(st.integers(8, 48))
    filters = max(draw(st.integers(8, 48)), math.ceil(2000 / (math.prod(spatial) * channels)))
    return spatial + (channels, filters)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=STATS_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_valid_arguments_sample_the_promised_statistics(cls, data, tmp_path_factory):
    rank = data.draw(st.integers(3 if cls in (I.ICNR, I.DeltaOrthogonal) else 2, 4), label="rank")
    init = cls(**data.draw(valid_kwargs(cls, rank=rank), label="kwargs"))
    shape = fit_shape(cls, init.get_config(), data.draw(sized_shapes(rank), label="shape"))
    dtype = data.draw(st.sampled_from(FLOATS), label="dtype")
    if cls is I.Pretrained:  # its promise is the stored array: store one, read it back
        stored = np.random.default_rng(len(shape)).normal(size=shape)
        # (a key named "file" would clash with np.savez's own argument)
        key = data.draw(st.from_regex(r"[a-z][a-z0-9_/]{0,7}", fullmatch=True).filter(
            lambda k: k != "file"), label="key")
        path = tmp_path_factory.mktemp("stored") / "w.npz"
        np.savez(path, **{key: stored})
        x = I.Pretrained(str(path), key)(shape, dtype=dtype)
        np.testing.assert_array_equal(to_numpy(x, shape), rounded(stored, dtype))
        return
    x = init(shape, dtype=dtype)
    assert tuple(x.shape) == shape and keras.backend.standardize_dtype(x.dtype) == dtype
    check_promise(cls, init.get_config(), shape, dtype, to_numpy(x, shape))


IDENTIFIERS = st.one_of(
    HOSTILE, st.sampled_from(sorted(BUILTIN_ALIASES)),
    st.sampled_from(sorted(BUILTIN_ALIASES)).map(lambda a: a[:-1] + "x"),  # a typo
    st.fixed_dictionaries({"class_name": st.sampled_from(sorted(BUILTIN_ALIASES)),
                           "config": st.dictionaries(st.sampled_from(["seed", "gain", "bogus"]),
                                                     HOSTILE, max_size=2)}),
)


@settings(max_examples=GET_EXAMPLES, **SETTINGS)
@given(identifier=IDENTIFIERS)
def test_get_resolves_any_identifier_or_refuses_it_by_name(identifier):
    try:
        init = keras_initkit.get(identifier)
    except (ValueError, TypeError) as error:
        # It says what it could not use: the identifier, the config or the argument in it.
        names = ["identifier", "initializer", "config", "seed", "gain", "bogus", "Unknown",
                 "interpret"]
        names_one_of(error, names)
        return
    assert init is None or callable(init)
