"""Every alias, with random valid arguments: the config survives JSON exactly, and the
initializer rebuilt from it (by class, by alias, by Keras' registered name) draws the same
values with the same seed."""
import json

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from initializer_cases import fit_shape, to_numpy, valid_kwargs

from keras_initkit import initializers as I
from keras_initkit.registry import BUILTIN_ALIASES

CONFIG_EXAMPLES = 12  # per alias
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def draws(init, shape, seed):
    """Two calls in a row, from a fixed global seed (unseeded instances draw from Python's
    `random`, which keras.utils.set_random_seed seeds)."""
    keras.utils.set_random_seed(seed)
    return [to_numpy(init(shape), shape) for _ in range(2)]


@pytest.mark.parametrize("alias", sorted(BUILTIN_ALIASES))
@settings(max_examples=CONFIG_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_config_round_trips_exactly_and_draws_the_same(alias, data, tmp_path_factory):
    cls = BUILTIN_ALIASES[alias]
    rank = data.draw(st.integers(3, 4), label="rank")
    kwargs = data.draw(valid_kwargs(cls, rank=rank), label="kwargs")
    shape = data.draw(st.tuples(*[st.integers(1, 5)] * rank), label="shape")
    if cls is I.Pretrained:  # a file that exists, so that there is something to draw
        kwargs["path"] = str(tmp_path_factory.mktemp("config") / "w.npz")
    init = cls(**kwargs)
    config = init.get_config()
    shape = fit_shape(cls, config, shape)
    if cls is I.Pretrained:
        np.savez(kwargs["path"], **{"w": np.arange(np.prod(shape), dtype="float32").reshape(
            shape)})
        init = cls(kwargs["path"], "w")
        config = init.get_config()

    text = json.dumps(config)
    assert json.loads(text) == config  # nothing JSON changes: no tuples, NumPy scalars, NaN
    by_class = cls.from_config(json.loads(text))
    by_alias = keras.initializers.get({"class_name": alias, "config": json.loads(text)})
    by_keras = keras.initializers.deserialize(json.loads(json.dumps(
        keras.initializers.serialize(init))))
    for clone in (by_class, by_alias, by_keras):
        assert type(clone) is cls and clone.get_config() == config

    seed = data.draw(st.integers(0, 2**31 - 1), label="global seed")
    expected = draws(init, shape, seed)
    for clone in (by_class, by_alias, by_keras):
        for mine, theirs in zip(expected, draws(clone, shape, seed)):
            np.testing.assert_array_equal(mine, theirs)
