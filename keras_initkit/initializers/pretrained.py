"""Pretrained values: transfer-learning initialization from a saved file.

The file may come from anywhere, so reading it runs no code: `.npz` archives
are read with `allow_pickle=False` (an object array, which only unpickling
could rebuild, is refused), and `.keras` models are loaded in Keras' safe mode,
even inside a `load_model(..., safe_mode=False)` or after
`keras.config.enable_unsafe_deserialization()` (a Lambda layer is refused).
Whatever goes wrong reading a file becomes a ValueError that names the path.

A `Pretrained` rebuilt from a config (`from_config`: Keras' `load_model`,
`clone_model`, `model_from_json`) opens its file only if the config was written
by this process (`get_config` seals it with a key that never leaves the
process). A config from anywhere else, a saved model's above all, never makes us
open a path it names: the weight starts at zeros, which `load_model` replaces
with the saved weights. No call-stack reading, no private Keras: a Keras release
cannot change which configs open files.
"""
import difflib
import functools
import hmac
import os
import secrets
import threading
import warnings

import keras
import ml_dtypes
import numpy as np
from keras import ops

from .._compat import name_scope_path, safe_mode
from .base import KitInitializer

SUFFIXES = (".keras", ".h5", ".npz")
# Seals the configs this process writes; a config from any other process cannot carry a
# valid seal. Without the seal, from_config could not tell `clone_model` (our own
# config: read the file) from a `.keras` file's (anyone's: open nothing).
_SEAL_KEY = secrets.token_bytes(32)
_loading = threading.local()  # depth: .keras models being loaded by _keras_arrays now
_ML_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz",
              "float8_e5m2", "float8_e5m2fnuz")


class PretrainedFileError(ValueError):
    """A ValueError that already names the file; not wrapped again on its way out."""


class _Refused(str):
    """Why a member of a file was not read (kept in place of its array)."""


@functools.lru_cache(maxsize=4)
def _arrays(path, _stamp):
    """Every array a file holds, by key. `_stamp` (mtime, size) invalidates the cache."""
    kind = {".npz": "NumPy .npz archive", ".keras": "Keras model"}.get(
        os.path.splitext(path)[1], "HDF5 file")
    try:
        if path.endswith(".npz"):
            return _npz_arrays(path)
        if path.endswith(".keras"):
            return _keras_arrays(path)
        return _h5_arrays(path)
    except PretrainedFileError:  # already says which file
        raise
    except Exception as error:  # a malformed or hostile file: whatever its parser raised
        hint = (" Pretrained reads archives of numeric arrays (np.savez) and never unpickles."
                if kind.startswith("NumPy") else "")
        raise PretrainedFileError(f"Pretrained: could not read path={path!r} as a {kind}: "
                                  f"{type(error).__name__}: {error}{hint}") from error


def _npz_arrays(path):
    # allow_pickle=False: a pickle, or an object array inside the archive, is never unpickled.
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("it holds a single .npy array, not an archive of named arrays "
                         "(save one with np.savez)")
    arrays = {}
    with data:
        for key in data.files:
            try:
                arrays[key] = data[key]
            except ValueError as error:  # an object array: only unpickling could read it
                arrays[key] = _Refused(f"it cannot be read without unpickling ({error})")
    return arrays


def _keras_arrays(path):
    # Our own load: load_model restores every saved weight, so a Pretrained inside this
    # model (even one naming this very file) opens nothing while it is rebuilt.
    _loading.depth = getattr(_loading, "depth", 0) + 1
    try:
        # Keras' own switch: an outer load_model(safe_mode=False) would otherwise leak in.
        with safe_mode(True):
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    finally:
        _loading.depth -= 1
    # Called inside a layer's build, every path the model loads with starts with that
    # layer's name scope: the keys are the paths as they were saved.
    scope = name_scope_path()
    arrays = {}
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        path = variable.path.removeprefix(scope + "/") if scope else variable.path
        arrays[path] = value
        # A Sequential model names its weights "model/layer/weight" before saving and
        # "layer/weight" after loading; accept the form the user saw in training too.
        if not path.startswith(model.name + "/"):
            arrays.setdefault(f"{model.name}/{path}", value)
    return arrays


def _h5_arrays(path):
    import h5py

    arrays = {}

    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            try:
                arrays[name] = np.asarray(obj[()])
            except Exception as error:  # a datatype h5py cannot turn into an array
                arrays[name] = _Refused(f"h5py could not read it ({error})")

    with h5py.File(path, "r") as f:
        f.visititems(read)
    return arrays


@keras.saving.register_keras_serializable(package="keras_initkit")
class Pretrained(KitInitializer):
    """Values read from a saved file: transfer learning used as initialization.

    The weights of a model trained on a similar task start the new model.
    Keys by file type:

    - `.npz`: the array's name in the archive.
    - `.keras`: the weight's path, `variable.path`, in the reloaded model,
      for example `"dense/kernel"`, or the same behind the model's name,
      `"sequential/dense/kernel"`, as a Sequential model names it before saving.
    - `.h5` / `.weights.h5`: the dataset's path inside the HDF5 file, for
      example `"layers/dense/vars/0"`.

    The file is read when the initializer is called, not when it is built: a
    config that names a file that is gone deserializes, but building a layer
    with it raises a ValueError naming the file.

    Rebuilt from a config (`from_config`, as `keras.saving.load_model`,
    `clone_model` and `model_from_json` do), it reads its file only when this
    process wrote the config: `get_config` adds a `seal`, an HMAC of the path
    and key under a key that never leaves the process. A config from elsewhere
    (a saved model loaded in another process, a hand-edited or hostile file)
    has no valid seal: its path is never opened, the weight starts at zeros
    and a warning says so once. `load_model` restores the saved weights over
    those zeros, so a saved model loads without its file; and a sealed config
    whose file is gone since gives zeros too, with the same warning. Files
    are cached by path, modification time and size. Reading a file runs no
    code (see the module docstring).

    Args:
        path: Path to a `.keras`, `.h5`/`.weights.h5` or `.npz` file; a relative one
            is made absolute at construction.
        key: Which array of the file to use.

    Returns:
        Called with `(shape, dtype=None)`: the stored array cast to `dtype`. A
        shape other than the stored one raises a ValueError that names both.

    Example:
    >>> np.savez("emb.npz", embedding=vectors)
    >>> keras.layers.Embedding(1000, 50,
    ...     embeddings_initializer=Pretrained("emb.npz", "embedding"))
    """

    formula = "w = array `key` of a .keras, .weights.h5 or .npz file"
    random = False
    fills_empty_shapes = False  # an empty weight is still checked against the file

    def __init__(self, path, key):
        super().__init__()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a string or path; received path={path!r}.")
        path = os.fspath(path)
        if not path.endswith(SUFFIXES):
            raise ValueError(
                f"`path` must name a file ending in {', '.join(SUFFIXES)}; received path={path!r}."
            )
        if not isinstance(key, str):
            raise TypeError(f"`key` must be a string; received key={key!r}.")
        if not key:
            raise ValueError("`key` must name an array of the file; received key=''.")
        # Absolute, so that a copy (clone_model) made after a change of directory finds the file.
        self.path = os.path.abspath(path)
        self.key = key
        self._origin = "code"  # or, from from_config, "sealed" (ours) or "foreign"

    @classmethod
    def from_config(cls, config):
        """The initializer a config describes; it opens its file only under a valid seal."""
        config = dict(config) if isinstance(config, dict) else config
        seal = config.pop("seal", None) if isinstance(config, dict) else None
        instance = super().from_config(config)
        ours = isinstance(seal, str) and hmac.compare_digest(
            seal.encode("utf-8", "backslashreplace"), _seal(instance.path, instance.key).encode())
        instance._origin = "sealed" if ours else "foreign"
        return instance

    def load(self):
        """The stored array, as NumPy."""
        if not os.path.isfile(self.path):
            raise ValueError(f"Pretrained: the file path={self.path!r} does not exist.")
        stat = os.stat(self.path)
        arrays = _arrays(os.path.abspath(self.path), (stat.st_mtime_ns, stat.st_size))
        if self.key not in arrays:
            close = difflib.get_close_matches(self.key, arrays, n=3, cutoff=0.5)
            hint = f" Did you mean {close}?" if close else ""
            listed = sorted(arrays)[:20]
            raise ValueError(
                f"Pretrained: key={self.key!r} is not in {self.path!r}.{hint} "
                f"Keys there ({len(arrays)}): {listed}{' ...' if len(arrays) > 20 else ''}"
            )
        value = arrays[self.key]
        if isinstance(value, _Refused):
            raise ValueError(f"Pretrained: the array key={self.key!r} in {self.path!r} is "
                             f"refused: {value}.")
        # Real numbers only: not strings, bytes, objects, records or complex numbers.
        # bfloat16 and the float8 types (ml_dtypes, kind "V") are floats too.
        if value.dtype.kind not in "biuf" and value.dtype.name not in _ML_FLOATS:
            raise ValueError(
                f"Pretrained: the array key={self.key!r} in {self.path!r} has dtype "
                f"{value.dtype}; a weight needs a real (float, integer or bool) array.")
        return value

    def generate(self, shape, dtype):
        if getattr(_loading, "depth", 0):  # inside _keras_arrays' load_model: restored next
            return ops.zeros(shape, dtype=dtype)
        gone = self._origin == "sealed" and not os.path.isfile(self.path)
        if self._origin == "foreign" or gone:
            why = ("its file is gone" if gone else
                   "its config was not written by this process, so its path is not opened")
            _warn_once(f"Pretrained(path={self.path!r}, key={self.key!r}) was rebuilt from a "
                       f"config and {why}: the weight starts at zeros. keras.saving.load_model "
                       "restores the saved weights over them; to initialize from the file, "
                       "construct Pretrained(path, key) in code.")
            return ops.zeros(shape, dtype=dtype)
        value = self.load()
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"Pretrained: the array key={self.key!r} in {self.path!r} has shape "
                f"{tuple(value.shape)}, but the weight to initialize has shape {tuple(shape)}."
            )
        self._check_values(value, dtype)
        # Rounded once, by NumPy, to the nearest value of `dtype`: TensorFlow casts float64
        # to float16 through float32, which rounds twice and misses by an ulp now and then.
        target = np.dtype(getattr(ml_dtypes, dtype, dtype))
        return ops.convert_to_tensor(np.asarray(value).astype(target), dtype=dtype)

    def _check_values(self, value, dtype):
        """Refuses NaN or Inf, and values that the cast to `dtype` would change wholesale."""
        if value.size == 0:
            return
        where = f"the array key={self.key!r} in {self.path!r}"
        if value.dtype.kind not in "biu":  # a float of any width, checked in float64
            value = value.astype(np.float64)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"Pretrained: {where} holds NaN or Inf; a weight must be finite.")
        low, high = float(value.min()), float(value.max())
        if keras.backend.is_float_dtype(dtype):
            info = ml_dtypes.finfo(dtype)
            fits = max(abs(low), abs(high)) <= float(info.max)
            # A few tiny weights flushing to 0 is rounding; all of them is a different array.
            nonzero = np.abs(value[value != 0])
            fits = fits and not (nonzero.size and nonzero.max() < float(info.tiny))
        elif dtype == "bool":
            fits = bool(np.isin(value, (0, 1)).all())
        else:  # an integer dtype: whole numbers within its range, not truncated or wrapped
            info = np.iinfo(dtype)
            fits = info.min <= low and high <= info.max and bool((value == np.round(value)).all())
        if not fits:
            raise TypeError(
                f"Pretrained: {where} holds values in [{low:g}, {high:g}] that dtype={dtype} "
                "cannot store (overflow, every non-zero value below its smallest normal number, or "
                "fractions for an integer dtype); use a wider dtype.")

    def get_config(self):
        config = {"path": self.path, "key": self.key}
        if self._origin != "foreign":  # a config we could not trust stays unsealed in every copy
            config["seal"] = _seal(self.path, self.key)
        return config


def _seal(path, key):
    return hmac.new(_SEAL_KEY, f"{path}\0{key}".encode(), "sha256").hexdigest()


@functools.lru_cache(maxsize=None)
def _warn_once(message):
    warnings.warn(message, stacklevel=4)
