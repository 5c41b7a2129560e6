"""Symmetry is always broken, and an explicit seed is reproducible across processes."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_initkit import initializers as I

RANDOM = [I.RandomNormal, I.RandomUniform, I.TruncatedNormal, I.VarianceScaling, I.HeNormal,
          I.GlorotUniform, I.LecunNormal, I.Orthogonal, I.DeltaOrthogonal, I.ConvolutionAware,
          I.Sparse]


def draw(init, shape=(3, 3, 8, 8)):
    return keras.ops.convert_to_numpy(init(shape))


@pytest.mark.parametrize("cls", RANDOM, ids=lambda c: c.__name__)
@pytest.mark.parametrize("seed", [None, 5])
def test_one_instance_called_twice_draws_fresh_values(cls, seed):
    init = cls(seed=seed)
    assert not np.array_equal(draw(init), draw(init))


@pytest.mark.parametrize("alias_or_instance", ["kit_he", I.HeNormal(), I.Orthogonal(seed=1)])
def test_an_instance_shared_by_two_layers_gives_different_kernels(alias_or_instance):
    a = keras.layers.Dense(16, kernel_initializer=alias_or_instance)
    b = keras.layers.Dense(16, kernel_initializer=a.kernel_initializer)
    a.build((None, 16)), b.build((None, 16))
    assert not np.array_equal(a.kernel.numpy(), b.kernel.numpy())


def test_einsum_dense_layers_sharing_a_seeded_instance_differ():
    init = I.HeNormal(seed=3)
    layers = [keras.layers.EinsumDense("ab,bc->ac", (8,), kernel_initializer=init)
              for _ in range(2)]
    for layer in layers:
        layer.build((None, 8))
    assert not np.array_equal(layers[0].kernel.numpy(), layers[1].kernel.numpy())


def test_set_random_seed_makes_unseeded_draws_reproducible():
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(11)
        runs.append([draw(I.HeNormal()), draw(I.Orthogonal())])
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)


def test_a_seeded_sequence_is_the_same_in_a_new_process(subprocess_env, tmp_path):
    import every_alias_model

    out = tmp_path / "draws.npz"
    code = ("import sys, numpy as np, every_alias_model as m; "
            "np.savez(sys.argv[1], **m.seeded_draws())")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, capture_output=True,
                   cwd=os.path.dirname(every_alias_model.__file__), env=subprocess_env)
    mine = every_alias_model.seeded_draws()
    with np.load(out) as other:
        assert set(other.files) == set(mine)
        for key in mine:
            np.testing.assert_array_equal(other[key], mine[key])
    assert not np.array_equal(mine["he0"], mine["he1"])


def test_reading_seed_leaves_the_sequence_of_draws_unchanged():
    a, b = I.HeNormal(seed=3), I.HeNormal(seed=3)
    first = a.seed
    assert isinstance(first, int) and a.seed != first  # a fresh seed per read, for copies
    np.testing.assert_array_equal(draw(a), draw(b))


def test_clone_model_redraws_unseeded_and_reproduces_seeded_initializers():
    # An explicit seed is a promise of the same sequence, in a clone as in a new process.
    def build(init):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, kernel_initializer=init)])

    for init, same in [(I.HeNormal(), False), ("kit_he", False), (I.HeNormal(seed=1), True)]:
        model = build(init)
        clone = keras.models.clone_model(model)
        assert np.array_equal(model.layers[0].kernel.numpy(), clone.layers[0].kernel.numpy()) \
            is same


def test_icnr_redraws_even_around_a_keras_builtin():
    init = I.ICNR(scale=2, initializer="he_normal")  # Keras' own fixed-seed HeNormal
    assert not np.array_equal(draw(init, (3, 3, 4, 8)), draw(init, (3, 3, 4, 8)))
    # A seeded Keras initializer inside: its seed starts ICNR's sequence, alike in every copy.
    seeded = [I.ICNR(2, keras.initializers.HeNormal(seed=3)) for _ in range(2)]
    first, second = (draw(init, (3, 3, 4, 8)) for init in seeded)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, draw(seeded[0], (3, 3, 4, 8)))  # and fresh per call
