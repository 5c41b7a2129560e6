"""Random small models (sequential, branching with Add and Concatenate, nested models used
as layers, a layer shared by two calls) go through diagnose and reinitialize: one report row
per layer call, finite statistics, every weight re-drawn once, the probe's trace reused."""
import collections
import json
import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import keras_initkit

L = keras.layers
MODEL_EXAMPLES = 12  # per kind of model; each traces one probe (under a second at this size)
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KERNELS = ["kit_he", "kit_glorot_uniform", "kit_orthogonal", "kit_lecun_normal",
           "kit_variance_scaling", "glorot_uniform"]
ACTIVATIONS = [None, "relu", "tanh", "gelu", "selu", "sigmoid", "leaky_relu"]

# A layer spec is (kind, units, activation, kernel); a block is one of
# ("layer", spec), ("add", spec), ("concat", spec, spec), ("nested", [spec, ...]),
# ("shared", activation, kernel).
layer_specs = st.tuples(st.sampled_from(["weights", "weights", "norm", "activation"]),
                        st.integers(1, 4), st.sampled_from(ACTIVATIONS),
                        st.sampled_from(KERNELS))
blocks = st.one_of(
    st.tuples(st.just("layer"), layer_specs),
    st.tuples(st.just("add"), layer_specs),
    st.tuples(st.just("concat"), layer_specs, layer_specs),
    st.tuples(st.just("nested"), st.lists(layer_specs, min_size=1, max_size=2)),
    st.tuples(st.just("shared"), st.sampled_from(ACTIVATIONS), st.sampled_from(KERNELS)),
)
topologies = st.fixed_dictionaries({"image": st.booleans(),
                                    "blocks": st.lists(blocks, min_size=1, max_size=3)})


class Builder:
    """Builds a model from a topology and counts every layer call it makes, by name."""

    def __init__(self, image):
        self.image, self.calls, self.count = image, collections.Counter(), 0

    def name(self, kind):
        self.count += 1
        return f"{kind}_{self.count}"

    def make(self, spec, width=None):
        """A layer from a spec; `width` fixes its output width (for Add)."""
        kind, units, activation, kernel = spec
        units = width or units
        if kind == "norm":
            return L.BatchNormalization(name=self.name("bn"))
        if kind == "activation":
            return L.Activation(activation or "linear", name=self.name("act"))
        if self.image:
            return L.Conv2D(units, 3, padding="same", activation=activation,
                            kernel_initializer=kernel, name=self.name("conv"))
        return L.Dense(units, activation=activation, kernel_initializer=kernel,
                       name=self.name("dense"))

    def call(self, layer, x):
        self.calls[layer.name] += 1
        return layer(x)

    def block(self, block, x):
        kind, width = block[0], x.shape[-1]
        if kind == "layer":
            return self.call(self.make(block[1]), x)
        if kind == "add":  # a residual block: the branch keeps the width
            branch = self.call(self.make(block[1], width if block[1][0] == "weights" else None),
                               x)
            return self.call(L.Add(name=self.name("add")), [x, branch])
        if kind == "concat":
            a, b = (self.call(self.make(spec), x) for spec in block[1:])
            return self.call(L.Concatenate(name=self.name("concat")), [a, b])
        if kind == "nested":  # a Sequential model used as one layer
            inner = [self.make(spec) for spec in block[1]]
            self.calls.update(layer.name for layer in inner)
            return self.call(keras.Sequential(inner, name=self.name("nested")), x)
        shared = self.make(("weights", width, block[1], block[2]), width)  # called twice
        return self.call(shared, self.call(shared, x))


def build(topology, sequential):
    builder = Builder(topology["image"])
    shape = (5, 5, 2) if topology["image"] else (4,)
    if sequential:  # each block as the one path a Sequential holds
        layers = []
        for block in topology["blocks"]:
            if block[0] == "nested":  # a Sequential inside the Sequential
                inner = [builder.make(spec) for spec in block[1]]
                builder.calls.update(layer.name for layer in inner)
                layers.append(keras.Sequential(inner, name=builder.name("nested")))
            elif block[0] == "shared":
                layers.append(builder.make(("weights", 3, block[1], block[2])))
            else:  # layer, add, concat: their first layer
                layers.append(builder.make(block[1]))
        head = [L.Flatten(name=builder.name("flatten"))] if topology["image"] else []
        layers += head + [L.Dense(2, name=builder.name("head"))]
        builder.calls.update(layer.name for layer in layers)
        model = keras.Sequential([keras.Input(shape)] + layers, name="sequential_model")
    else:
        inputs = x = keras.Input(shape)
        for block in topology["blocks"]:
            x = builder.block(block, x)
        if topology["image"]:
            x = builder.call(L.GlobalAveragePooling2D(name=builder.name("pool")), x)
        model = keras.Model(inputs, builder.call(L.Dense(2, name=builder.name("head")), x))
    return model, builder.calls, shape


def kernels(model):
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights if "kernel" in v.path}


def check_report(report, calls):
    assert collections.Counter(row["layer"] for row in report.layers) == calls
    for row in report.layers:
        assert math.isfinite(row["std"]) and row["std"] >= 0, row
    json.dumps(report.to_dict())


@pytest.mark.parametrize("sequential", [True, False], ids=["sequential", "functional"])
@settings(max_examples=MODEL_EXAMPLES, **SETTINGS)
@given(topology=topologies, scheme=st.sampled_from(["kit_he", "kit_orthogonal", "kit_glorot"]),
       seed=st.integers(0, 2**31 - 1))
def test_random_models_diagnose_and_reinitialize(sequential, topology, scheme, seed):
    model, calls, shape = build(topology, sequential)
    for block in topology["blocks"]:
        event(f"has {block[0]}")
    x = np.random.default_rng(seed).normal(size=(8, *shape)).astype("float32")
    check_report(keras_initkit.diagnose(model, x), calls)

    # reinitialize(model) is "auto". (A new seed for the second: "auto" draws a linear layer
    # as kit_orthogonal would, so with the same seed it would draw the same kernel again.)
    for offset, chosen in enumerate(("auto", scheme)):
        before = kernels(model)
        rows = keras_initkit.reinitialize(model, *(() if chosen == "auto" else (chosen,)),
                                          seed=seed + offset)
        # Every weight re-drawn exactly once (a shared layer's too), every kernel changed.
        redrawn = [(row["layer"], row["weight"]) for row in rows]
        assert len(redrawn) == len(set(redrawn)) == len(model.weights)
        after = kernels(model)
        for path, value in after.items():
            assert np.isfinite(value).all() and not np.array_equal(value, before[path]), path
        # The cached probe reads the new weights: same rows, still finite.
        check_report(keras_initkit.diagnose(model, x), calls)
