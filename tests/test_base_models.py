"""The base models of `initkit compare --arch resmlp | transformer`, and the sequence task."""
import keras
import numpy as np
import pytest

import keras_initkit
from keras_initkit.base_models import decoder, delayed_copy, residual_mlp
from keras_initkit.model_init.residual import structure_of


def test_delayed_copy_targets_are_the_tokens_delay_positions_back():
    x, y = delayed_copy(samples=50, length=10, vocabulary=7, delay=3, seed=1)
    assert x.shape == y.shape == (50, 10) and x.min() >= 1 and x.max() <= 6
    np.testing.assert_array_equal(y[:, 3:], x[:, :-3])
    assert not y[:, :3].any()
    with pytest.raises(ValueError, match="delay"):
        delayed_copy(length=4, delay=4)


def test_the_decoder_is_a_gpt2_as_keras_hub_draws_it(tmp_path):
    model = decoder(length=16, vocabulary=16, depth=3, width=32)
    structure = structure_of(model)
    assert len(structure.branches) == 6 and len(structure.attention) == 3
    # Drawn N(0, 0.02^2) everywhere: the GPT-2 recipe differs exactly on the 6 projections.
    differing = keras_initkit.audit(model, "gpt2").differing
    assert sorted(differing) == sorted(p for b in structure.branches for p in b.output)
    path = tmp_path / "decoder.keras"
    model.save(path)
    tokens = np.arange(32, dtype="int32").reshape(2, 16) % 16
    np.testing.assert_allclose(keras.saving.load_model(path)(tokens), model(tokens), rtol=1e-5)


def test_the_residual_mlp_has_a_branch_per_block():
    structure = structure_of(residual_mlp((8,), 3, depth=4, width=16))
    assert [b.output for b in structure.branches] == [(f"block_{i}_out/kernel",)
                                                      for i in range(1, 5)]
    with pytest.raises(ValueError, match="depth"):
        residual_mlp((8,), 3, depth=0)


def test_token_collapse_behind_skip_connections_is_a_warning():
    # DeepNorm's small branch gains on a pre-LN decoder leave the stream to the branches, which
    # add the same vector to every token: cosine > 0.9, yet the skips let it train. The recipe
    # keeps the embeddings as drawn, and the cosine sits near 0.9: the draw is seeded.
    keras.utils.set_random_seed(1)
    model = decoder(length=16, vocabulary=16, depth=8, width=64)
    keras_initkit.reinitialize(model, "deepnorm", seed=0)
    x, _ = delayed_copy(samples=64, seed=0)
    report = keras_initkit.diagnose(model, x)
    (finding,) = [f for f in report.findings if f.kind == "rank_collapse"]
    assert finding.severity == "warning" and report.healthy
    assert "skip connections let training separate them" in finding.message
