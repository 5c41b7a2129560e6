"""Pretrained values: transfer-learning initialization from a saved file."""
import difflib
import functools
import os

import keras
import numpy as np
from keras import ops

from .base import KitInitializer

SUFFIXES = (".keras", ".h5", ".npz")


@functools.lru_cache(maxsize=4)
def _arrays(path, _stamp):
    """Every array a file holds, by key. `_stamp` (mtime, size) invalidates the cache."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    if path.endswith(".keras"):
        model = keras.saving.load_model(path, compile=False)
        arrays = {}
        for variable in model.weights:
            value = keras.ops.convert_to_numpy(variable)
            arrays[variable.path] = value
            # A Sequential model names its weights "model/layer/weight" before saving and
            # "layer/weight" after loading; accept the form the user saw in training too.
            if not variable.path.startswith(model.name + "/"):
                arrays.setdefault(f"{model.name}/{variable.path}", value)
        return arrays
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
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

    The file is read when the initializer is called, not when it is built, so
    a saved model that names a file that is gone still loads its own weights.
    Files are cached by path, modification time and size.

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
        return arrays[self.key]

    def generate(self, shape, dtype):
        value = self.load()
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"Pretrained: the array key={self.key!r} in {self.path!r} has shape "
                f"{tuple(value.shape)}, but the weight to initialize has shape {tuple(shape)}."
            )
        return ops.cast(ops.convert_to_tensor(value), dtype)

    def get_config(self):
        return {"path": self.path, "key": self.key}
