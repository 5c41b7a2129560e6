"""Transfer learning used as initialization: start a new model from a trained one.

`transfer_weights(source, target)` copies the weights of a pretrained model,
or of a `.keras` or `.weights.h5` file, into the built model `target`, layer by
layer, and says what it copied, what it skipped (with the shapes that differed)
and what it left to the target's initializers.

The unit compared is a *leaf layer*: a layer that owns variables itself (a
Dense, a BatchNormalization, an LSTM's cell). Nested models are walked, and a
leaf is named by its path of layer names below the top model, such as
`"body/dense_1"`. The top model's own name is never part of a path, so a
`"teacher"` transfers into a `"student"`.

A `.weights.h5` file holds no architecture, so it is read with h5py as Keras 3
writes it: `layers/<key>/vars/0, 1, ...`, nested models under
`layers/<key>/layers/<key>/vars/...`. `<key>` is the snake-cased class name
(`dense`, `dense_1`, `batch_normalization`), not the layer name; the layer
name is the `name` attribute of the `vars` group, and that is what paths use.
h5py lists the keys alphabetically and the file does not record the order
across classes, so `match="order"` from such a file pairs layers by key: the
n-th Dense of the target takes the n-th Dense of the file, as Keras'
`load_weights` does.
"""
import dataclasses
import json
import os
import re

import keras

from .._compat import own_variables, saveable_type, saving_children

__all__ = ["transfer_weights", "TransferReport"]

MATCHES = ("name", "order", "shape")
SUFFIXES = (".keras", ".weights.h5")


@dataclasses.dataclass
class TransferReport:
    """What `transfer_weights` did, one entry per leaf layer of the target.

    Attributes:
        copied: `(target_path, source_path)` of every layer whose variables
            were all copied.
        skipped: `(target_path, source_path, target_shapes, source_shapes,
            reason)` of every target layer with weights that was not copied.
            `source_path` and `source_shapes` are None when no source layer
            was found; shapes are lists of tuples, one per variable.
        initialized: The target paths of the skipped layers: the layers that
            keep the values their initializers gave them.
        unused: Source layer paths that no target layer took (an old head, or
            a name that differs).
        match: The matching rule used.
        source: The source, as text (a path or the model's name).
    """

    copied: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    initialized: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    match: str = "name"
    source: str = ""

    def table(self):
        """A plain-text summary: one row per target layer, then the totals."""
        rows = [("target layer", "source layer", "status", "shapes")]
        rows += [(t, s, "copied", "") for t, s in self.copied]
        for target, source, t_shapes, s_shapes, reason in self.skipped:
            shapes = _shapes_text(t_shapes)
            if s_shapes is not None:
                shapes += f" vs source {_shapes_text(s_shapes)}"
            rows.append((target, source or "-", f"skipped ({reason})", shapes))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths + [0])).rstrip()
                 for row in rows]
        lines.append(f"Transfer by {self.match} from {self.source!r}: {len(self.copied)} copied, "
                     f"{len(self.skipped)} skipped, {len(self.initialized)} left to the "
                     f"initializer, {len(self.unused)} source layer(s) unused.")
        if self.unused:
            lines.append("Unused source layers: " + ", ".join(self.unused))
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """Everything in the report as plain, JSON-serializable Python (shapes as lists)."""
        def shapes(value):
            return None if value is None else [list(shape) for shape in value]

        out = {
            "match": self.match,
            "source": self.source,
            "copied": [{"target": t, "source": s} for t, s in self.copied],
            "skipped": [{"target": t, "source": s, "target_shapes": shapes(ts),
                         "source_shapes": shapes(ss), "reason": reason}
                        for t, s, ts, ss, reason in self.skipped],
            "initialized": list(self.initialized),
            "unused": list(self.unused),
        }
        json.dumps(out)  # fails here, not in the caller's file, if something is not plain
        return out


def transfer_weights(source, target, *, match="name", strict=False):
    """Copies pretrained weights into a new model: transfer learning as initialization.

    The weights of a model trained on a similar task start the new model. Each
    leaf layer of `target` (a layer that owns variables itself; nested models
    are walked) is paired with a leaf layer of `source`, and all its variables,
    trainable or not (kernel, bias, BatchNormalization moving statistics), are
    assigned from it. A pair is copied only when every variable's shape is
    equal; otherwise the target layer is skipped and keeps its initializer's
    values, and the report records both shape lists.

    Matching rules:

    - `"name"`: the source layer at the same path of layer names, such as
      `"hidden"` or `"body/dense_1"` (the top models' names are not part of it).
    - `"order"`: the i-th target layer with weights takes the i-th source
      layer with weights, in the order Keras saves them (a Functional or
      Sequential model's layers in order; a subclassed model's by attribute
      name). A `.weights.h5` file keeps that order only within each layer
      class, so from one the n-th layer of a class (the n-th Dense) takes the
      n-th of that class in the file, as Keras' `load_weights` pairs them.
    - `"shape"`: each target layer, in order, takes the first unused source
      layer whose variable shapes are all equal to its own (from a
      `.weights.h5` file: grouped by class, in order within each class).

    Args:
        source: A built `keras.Model`, or a path (str or PathLike) to a
            `.keras` file (loaded with `keras.saving.load_model(path,
            compile=False)`, in Keras' safe mode) or to a `.weights.h5` file
            (read with h5py; no architecture is needed, nothing is unpickled).
        target: The built `keras.Model` to initialize. Changed in place.
        match: `"name"` (default), `"order"` or `"shape"`.
        strict: If True, any skipped target layer (shapes that differ, or no
            source layer at all) is an error, raised before anything is copied.

    Returns:
        A `TransferReport` with `copied`, `skipped`, `initialized` and
        `unused`; `print(report)` shows a table, `report.to_dict()` is
        JSON-serializable.

    Raises:
        TypeError: `target` is not a keras.Model, or `source` is neither a
            keras.Model nor a path.
        ValueError: `match` is not allowed; `target` or the source model is
            not built; the path does not end in `.keras` or `.weights.h5`;
            with `strict=True`, a layer was skipped (the message names the
            layer and both shape lists).
        FileNotFoundError: the path names no file.

    Example:
    >>> teacher.save("teacher.keras")  # body layers "conv", "bn"; head Dense(10)
    >>> student = keras.Sequential([keras.Input((32, 32, 3)),
    ...     keras.layers.Conv2D(16, 3, name="conv"),
    ...     keras.layers.BatchNormalization(name="bn"),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(5, name="head")])  # a new head for the new task
    >>> report = transfer_weights("teacher.keras", student)
    >>> print(report)  # conv and bn copied; head skipped, (16, 5) vs source (16, 10)
    """
    # Every argument is checked before any file is opened or any weight is touched.
    if not isinstance(match, str) or match not in MATCHES:
        raise ValueError(f"`match` must be one of {', '.join(repr(m) for m in MATCHES)}; "
                         f"received match={match!r}.")
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be True or False; received strict={strict!r}.")
    if not isinstance(target, keras.Model):
        raise TypeError(f"`target` must be a built keras.Model; received "
                        f"{type(target).__name__}.")
    if not target.built:
        raise ValueError(f"`target` model {target.name!r} is not built, so it has no weights "
                         "to initialize yet; give it an Input or call `target.build(shape)`.")
    if isinstance(source, keras.Model):
        if not source.built:
            raise ValueError(f"The source model {source.name!r} is not built, so it has no "
                             "weights to copy.")
        return _transfer(_model_leaves(source), target, match, strict, source.name)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"`source` must be a keras.Model or a path to a .keras or .weights.h5 "
                        f"file; received {type(source).__name__}.")
    path = os.fspath(source)
    if not isinstance(path, str) or not path.endswith(SUFFIXES):
        raise ValueError(f"`source` must be a path ending in {' or '.join(SUFFIXES)}; "
                         f"received source={path!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`source` names no file: {path!r}.")
    if path.endswith(".keras"):
        model = keras.saving.load_model(path, compile=False)
        return _transfer(_model_leaves(model), target, match, strict, path)
    import h5py  # only for .weights.h5 files

    with h5py.File(path, "r") as f:  # open while copying: only matched arrays are read
        return _transfer(_h5_leaves(f), target, match, strict, path, order_by_key=True)


_Saveable = saveable_type()  # what Keras' saving walks into


@dataclasses.dataclass
class _Leaf:
    path: str  # layer names below the top model: "body/dense_1"
    key: str  # where Keras saves it in a .weights.h5 file: "layers/sequential/layers/dense_1"
    values: list  # keras Variables, or h5py Datasets

    @property
    def shapes(self):
        return [tuple(int(d) for d in v.shape) for v in self.values]


def _model_leaves(model):
    """Leaf layers of a model, in the order and under the keys Keras saves them with."""
    leaves, seen = [], {id(model)}

    def visit(layer, path, key):
        # The variables a layer owns itself, in the order `save_own_variables` writes
        # them (vars/0, 1, ...). The top model's own variables have no path; left out.
        own = own_variables(layer)
        if own and layer is not model:
            leaves.append(_Leaf(path, key, list(own)))
        for attr, child in saving_children(layer):
            if isinstance(child, keras.layers.Layer):
                enter(child, path, _join(key, attr))
            elif isinstance(child, (list, tuple, dict)):
                container(child, path, _join(key, attr), set())

    def enter(layer, path, key):
        if id(layer) not in seen:  # a shared layer is saved, and listed, once
            seen.add(id(layer))
            visit(layer, _join(path, layer.name), key)

    def container(items, path, key, visited):
        # In a list, Keras keys an item by its snake-cased class name and a counter.
        if id(items) in visited:
            return
        visited.add(id(items))
        used = {}
        for item in items.values() if isinstance(items, dict) else items:
            if isinstance(item, _Saveable):
                name = _unique(_snake_case(type(item).__name__), used)
                if isinstance(item, keras.layers.Layer):
                    enter(item, path, _join(key, name))
            elif isinstance(item, (list, tuple, dict)):
                container(item, path, _join(key, _unique("container", used)), visited)

    visit(model, "", "")
    return leaves


def _h5_leaves(f):
    """Leaf layers of a Keras 3 `.weights.h5` file.

    A group that holds a `vars` group is a saved layer, named by that group's
    `name` attribute; any other group is a list (`layers`) and adds no name.
    h5py lists keys alphabetically, not in the order Keras wrote them, so
    `dense_2` is put before `dense_10` here, and a model's `layers` first.
    """
    import h5py

    leaves = []

    def visit(group, path, key):
        # A compiled model's optimizer is saved next to its layers (at the root, or
        # inside a nested model); its slots are not weights of any layer.
        for k in sorted((k for k in group if k not in ("vars", "optimizer")), key=_key_order):
            child = group[k]
            if not isinstance(child, h5py.Group):
                continue
            if "vars" in child:
                name = child["vars"].attrs.get("name", k)  # older files: the key
                name = name.decode() if isinstance(name, bytes) else str(name)
                own = child["vars"]
                # vars/0, 1, ..., 10 list as text; the number is the variable's position.
                numbers = sorted((n for n in own if isinstance(own[n], h5py.Dataset)), key=int)
                if numbers:
                    leaves.append(_Leaf(_join(path, name), _join(key, k),
                                        [own[n] for n in numbers]))
                visit(child, _join(path, name), _join(key, k))
            else:
                visit(child, path, _join(key, k))

    visit(f, "", "")  # the top model's own name is not part of any path
    return leaves


def _key_order(key):
    m = re.fullmatch(r"(.+)_(\d+)", key)
    base, n = (m.group(1), int(m.group(2))) if m else (key, 0)
    return key != "layers", base.startswith("_"), base, n


def _snake_case(name):  # as keras.src.utils.naming.to_snake_case
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(name, used):  # as Keras' saving_lib._get_unique_name
    used[name] = used.get(name, -1) + 1
    return f"{name}_{used[name]}" if used[name] else name


def _join(prefix, name):
    return f"{prefix}/{name}" if prefix else name


def _transfer(source_leaves, target, match, strict, source_text, order_by_key=False):
    target_leaves = _model_leaves(target)
    report = TransferReport(match=match, source=source_text)
    pairs, used = [], set()
    by_path, by_key = {}, {}
    for i, leaf in enumerate(source_leaves):
        by_path.setdefault(leaf.path, i)
        by_key.setdefault(leaf.key, i)
    for n, leaf in enumerate(target_leaves):
        if match == "name":
            i = by_path.get(leaf.path)
        elif match == "order" and order_by_key:
            # A .weights.h5 file keeps the order only within a class (dense, dense_1, ...);
            # the key says which n-th layer of its class, as Keras' load_weights reads it.
            i = by_key.get(leaf.key)
        elif match == "order":
            i = n if n < len(source_leaves) else None
        else:
            i = next((i for i, s in enumerate(source_leaves)
                      if i not in used and s.shapes == leaf.shapes), None)
        if i is None:
            report.skipped.append((leaf.path, None, leaf.shapes, None, "no source layer"))
        elif source_leaves[i].shapes != leaf.shapes:
            used.add(i)
            report.skipped.append((leaf.path, source_leaves[i].path, leaf.shapes,
                                   source_leaves[i].shapes, "shape mismatch"))
        else:
            used.add(i)
            pairs.append((leaf, source_leaves[i]))
            report.copied.append((leaf.path, source_leaves[i].path))
    report.initialized = [entry[0] for entry in report.skipped]
    report.unused = [s.path for i, s in enumerate(source_leaves) if i not in used]

    if strict and report.skipped:
        lines = [f"target layer {t!r} has shapes {_shapes_text(ts)}, but "
                 + (f"source layer {s!r} has shapes {_shapes_text(ss)}" if s is not None
                    else f"no source layer matched (match={match!r}); source shapes: none")
                 for t, s, ts, ss, _ in report.skipped]
        raise ValueError(f"transfer_weights(strict=True): {len(lines)} target layer(s) from "
                         f"{source_text!r} would be skipped, so nothing was copied.\n- "
                         + "\n- ".join(lines))

    for target_leaf, source_leaf in pairs:
        for variable, value in zip(target_leaf.values, source_leaf.values):
            variable.assign(keras.ops.cast(_numpy(value), variable.dtype))
    return report


def _numpy(value):
    """A source variable's or dataset's value, as NumPy."""
    if isinstance(value, keras.Variable):
        return keras.ops.convert_to_numpy(value)
    if value.attrs.get("dtype") == "bfloat16":  # Keras stores bfloat16 under a plain dtype
        import ml_dtypes
        import numpy as np

        return np.array(value, dtype=ml_dtypes.bfloat16)
    return value[()]


def _shapes_text(shapes):
    return "[" + ", ".join(str(tuple(s)) for s in shapes) + "]"
