"""Run as a script under KERAS_BACKEND=jax/torch (tests/model_init/test_recipes_backends.py):
reads the structure of seven models, applies and audits two recipes and sets one model by
mimetic initialization; writes what it found to `argv[1]`. Imported under TensorFlow, it
gives the same in-process."""
import hashlib
import json
import sys

import keras
import numpy as np


def models():
    """name -> a small model of each family the recipes serve (random weights)."""
    import keras_hub

    from keras_initkit.base_models import decoder, residual_mlp

    hub = keras_hub.models
    text = dict(vocabulary_size=100, num_layers=2, hidden_dim=32, intermediate_dim=64)
    return {
        "residual_mlp": residual_mlp((8,), 3, depth=4, width=16),
        "decoder": decoder(length=16, vocabulary=16, depth=3, width=32),
        "resnet50": keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                                classes=10),
        "gpt2": hub.GPT2Backbone(num_heads=2, max_sequence_length=32, **text),
        "bert": hub.BertBackbone(num_heads=2, max_sequence_length=32, **text),
        "llama": hub.LlamaBackbone(num_query_heads=4, num_key_value_heads=2, **text),
        "vit": hub.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                               num_heads=2, hidden_dim=32, mlp_dim=64),
    }


def structures(built):
    """Every field of each model's `Structure`, and every weight's role."""
    from keras_initkit.model_init.residual import structure_of

    found = {}
    for name, model in built.items():
        s = structure_of(model)
        found[name] = dict(
            branches=[[list(field) for field in b] for b in s.branches],
            attention=[[list(field) for field in a] for a in s.attention],
            readout=list(s.readout), embeddings=list(s.embeddings), kernels=list(s.kernels),
            roles=s.roles())
    return found


def recipes(built):
    """What `audit` finds before and after `reinitialize`, and a digest of the weights that
    `mimetic` sets (drawn by NumPy: the same on every backend)."""
    import keras_initkit

    out = {"stock_gpt2": keras_initkit.audit(built["gpt2"], "gpt2").differing}
    for name, recipe in (("gpt2", "gpt2"), ("residual_mlp", "fixup"), ("vit", "vit")):
        keras_initkit.reinitialize(built[name], recipe, seed=0)
        out[recipe] = keras_initkit.audit(built[name], recipe).differing
    rows = keras_initkit.mimetic(built["vit"], seed=0)
    digest = hashlib.sha256()
    for path in sorted(p for row in rows for p in (row["query"], row["key"], row["value"],
                                                  row["output"])):
        weight = next(v for v in built["vit"].weights if v.path == path)
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    out["mimetic"] = [len(rows), digest.hexdigest()]
    return out


def main(out=None):
    """The structures and recipes found; written as JSON to `out` when given. (Not read from
    sys.argv here: in pytest's process that is pytest's own command line.)"""
    built = models()
    found = {"structures": structures(built), "recipes": recipes(built)}
    if out is not None:
        with open(out, "w") as f:
            json.dump(found, f)
    return found


if __name__ == "__main__":
    main(sys.argv[1])
