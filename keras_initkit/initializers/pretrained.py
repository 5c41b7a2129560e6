"""Pretrained values: transfer-learning initialization from a saved file.

The file may come from anywhere, so reading it runs no code: `.npz` archives
are read with `allow_pickle=False` (an object array, which only unpickling
could rebuild, is refused), and `.keras` models are loaded in Keras' safe mode,
even inside a `load_model(..., safe_mode=False)` or after
`keras.config.enable_unsafe_deserialization()` (a Lambda layer is refused).
Whatever goes wrong reading a file becomes a ValueError that names the path.
While Keras' `load_model` rebuilds a saved model, no file is opened at all: the
saved weights replace the initial ones.
"""
import difflib
import functools
import os
import threading

import keras
import ml_dtypes
import numpy as np
from keras import ops

from .._compat import restoring_a_saved_model, safe_mode
from .base import KitInitializer

SUFFIXES = (".keras", ".h5", ".npz")
_loading = threading.local()  # .keras paths being loaded now: a model that names its own file
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
    busy = getattr(_loading, "paths", set())
    if path in busy:  # its model calls Pretrained on its own file while being built
        raise PretrainedFileError(
            f"Pretrained: path={path!r} names a model that is initialized from its own file "
            "(directly or through other files); refused.")
    _loading.paths = busy | {path}
    try:
        # Keras' own switch: an outer load_model(safe_mode=False) would otherwise leak in.
        with safe_mode(True):
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    finally:
        _loading.paths = busy
    arrays = {}
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        arrays[variable.path] = value
        # A Sequential model names its weights "model/layer/weight" before saving and
        # "layer/weight" after loading; accept the form the user saw in training too.
        if not variable.path.startswith(model.name + "/"):
            arrays.setdefault(f"{model.name}/{variable.path}", value)
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
    with it raises a ValueError naming the file. The exception is
    `keras.saving.load_model` (`.keras` and legacy `.h5`): it builds every
    layer before it restores the saved weights, which replace whatever the
    initializer gives, so while it rebuilds the model the file is not opened
    and the weight starts as zeros. A saved model that uses `Pretrained` thus
    loads without its file, and a `.keras` file's config never makes us open
    a path it names. Files are cached by path, modification time and size.
    Reading a file runs no code (see the module docstring).

    Args:
        path: Path to a `.keras`, `.h5`/`.weights.h5` or `.npz` file.
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
        self.path = path
        self.key = key

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
        if restoring_a_saved_model():  # the saved weights replace these; Keras raises if not
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
            fits = max(abs(low), abs(high)) <= float(ml_dtypes.finfo(dtype).max)
        elif dtype == "bool":
            fits = bool(np.isin(value, (0, 1)).all())
        else:  # an integer dtype: whole numbers within its range, not truncated or wrapped
            info = np.iinfo(dtype)
            fits = info.min <= low and high <= info.max and bool((value == np.round(value)).all())
        if not fits:
            raise TypeError(
                f"Pretrained: {where} holds values in [{low:g}, {high:g}] that dtype={dtype} "
                "cannot store (overflow, or fractions for an integer dtype); use a wider dtype.")

    def get_config(self):
        return {"path": self.path, "key": self.key}
