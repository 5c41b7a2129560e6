"""Register your own initialization scheme under a `kit_*` alias, use it, save and reload it.

`@keras_initkit.register_initializer(alias)` takes either a
`keras.initializers.Initializer` subclass (arguments kept by `get_config`)
or a plain function `fn(shape, dtype=None)`. Both become usable by name,
`Dense(..., kernel_initializer=alias)`, through `keras_initkit.get(alias)`,
and are listed by `keras_initkit.list_initializers()`; a model built with
them saves to `.keras` and reloads, as long as the registration has run
before loading (import the module that defines them).

Two schemes are defined here:

- `kit_spectral_normal` (a class): a Gaussian kernel rescaled so that its
  largest singular value is `gain`; a layer with it is `gain`-Lipschitz at
  initialization.
- `kit_unit_columns` (a function): Gaussian draws with every output unit's
  weight vector scaled to unit L2 norm, as weight normalization starts.

The example checks each scheme's property on the built kernels, that one
seeded instance gives fresh draws per call but the same sequence in every
instance, and that the saved model reloads with equal weights and the same
initializer configs.

    python examples/custom_initializer.py [--out DIR] [--quick]

Writes custom_init.keras to --out (default example_output/custom_initializer).
A few seconds on a 2-core CPU; --quick changes nothing (there is nothing to
shorten) and is accepted for uniformity with the other examples.
"""
import argparse
import json
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_initkit


@keras_initkit.register_initializer("kit_spectral_normal")
class SpectralNormal(keras.initializers.Initializer):
    """Gaussian kernel scaled to spectral norm `gain` (largest singular value)."""

    def __init__(self, gain=1.0, seed=None):
        if not gain > 0:
            raise ValueError(f"`gain` must be > 0; received gain={gain!r}.")
        self.gain = float(gain)
        self.seed = seed
        # A generator, not a fixed seed: each call draws anew, so layers that share one
        # instance still get different kernels; an integer seed fixes the sequence.
        self._rng = np.random.default_rng(seed)

    def __call__(self, shape, dtype=None):
        w = self._rng.standard_normal(shape)
        # Conv kernels (*k, in, out) are the matrix (prod(k) * in, out) for this purpose.
        sigma = np.linalg.norm(w.reshape(-1, shape[-1]), ord=2)
        return keras.ops.convert_to_tensor(w * (self.gain / sigma),
                                           dtype=dtype or keras.backend.floatx())

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}  # every constructor argument


@keras_initkit.register_initializer("kit_unit_columns")
def unit_columns(shape, dtype=None):
    """Gaussian draws, each output unit's weight vector scaled to unit L2 norm."""
    w = keras.random.normal(shape, dtype=dtype)  # unseeded: fresh per call, set_random_seed-able
    axes = tuple(range(len(shape) - 1))
    return w / keras.ops.sqrt(keras.ops.sum(keras.ops.square(w), axis=axes, keepdims=True))


def build():
    return keras.Sequential([
        keras.Input((32,)),
        keras.layers.Dense(64, activation="tanh", kernel_initializer="kit_spectral_normal",
                           name="by_alias"),
        keras.layers.Dense(64, activation="tanh", name="with_args",
                           kernel_initializer=SpectralNormal(gain=0.9, seed=7)),
        keras.layers.Dense(10, kernel_initializer="kit_unit_columns", name="function_alias"),
    ], name="custom_init")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("example_output", "custom_initializer"),
                        help="folder for the saved model")
    parser.add_argument("--quick", action="store_true", help="accepted; changes nothing")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    print("Registered aliases:")
    for info in keras_initkit.list_initializers():
        if info.alias in ("kit_spectral_normal", "kit_unit_columns"):
            print(f"  {info.alias:<22}{info.cls.__name__:<36}{info.formula}")
    assert isinstance(keras_initkit.get("kit_spectral_normal"), SpectralNormal)

    # The seed promise: a fixed sequence of draws, never the same draw twice.
    a, b = SpectralNormal(seed=3), SpectralNormal(seed=3)
    first_a, second_a, first_b = a((8, 8)), a((8, 8)), b((8, 8))
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.array_equal(first_a, second_a)

    keras.utils.set_random_seed(args.seed)
    model = build()
    kernels = {layer.name: keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers}
    sigma = {name: np.linalg.norm(k, ord=2) for name, k in kernels.items()}
    column_norms = np.linalg.norm(kernels["function_alias"], axis=0)
    print(f"\nSpectral norm of 'by_alias' {sigma['by_alias']:.4f} (gain 1), of 'with_args' "
          f"{sigma['with_args']:.4f} (gain 0.9); 'function_alias' column norms "
          f"{column_norms.min():.4f}..{column_norms.max():.4f}")
    np.testing.assert_allclose([sigma["by_alias"], sigma["with_args"]], [1.0, 0.9], rtol=1e-5)
    np.testing.assert_allclose(column_norms, 1.0, rtol=1e-5)

    path = os.path.join(args.out, "custom_init.keras")
    model.save(path)
    with zipfile.ZipFile(path) as f:  # what the file records: the class, not the alias string
        layers = json.loads(f.read("config.json"))["config"]["layers"]
    saved = next(layer["config"] for layer in layers if layer["config"]["name"] == "with_args")
    print(f"\nSaved to {path}; 'with_args' kernel_initializer in the file:\n  "
          f"{json.dumps(saved['kernel_initializer'])}")

    reloaded = keras.saving.load_model(path)
    for before, after in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(before, after)
    for layer, again in zip(model.layers, reloaded.layers):
        assert type(again.kernel_initializer) is type(layer.kernel_initializer)
        assert again.kernel_initializer.get_config() == layer.kernel_initializer.get_config()
    restored = reloaded.get_layer("with_args").kernel_initializer
    print(f"Reloaded: weights identical: True; 'with_args' initializer "
          f"{type(restored).__name__}({restored.get_config()})")


if __name__ == "__main__":
    main()
