import gc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported anywhere

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # the helper modules next to the tests

import keras_initkit  # noqa: F401  (registers the aliases)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def _set_aside_what_each_module_leaves():
    """After each test module, Keras' state is cleared and what survives is frozen.

    TensorFlow keeps the graph of every `fit`, `evaluate` and `tf.function` it has traced, so
    each garbage collection of one long pytest process walks more of them: late tests ran
    twice as slow as alone. Frozen objects are not walked again (`gc.freeze`)."""
    yield
    import keras

    keras.backend.clear_session()  # it collects garbage first
    gc.freeze()


@pytest.fixture
def subprocess_env():
    """The environment for a fresh Python process that imports the project from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env

