"""The whole-model recipes on JAX and PyTorch: the structure read off each backend's trace
(TensorFlow's graph, JAX's jaxpr, the torch functions PyTorch runs) equals TensorFlow's for
a residual MLP, a GPT-2-like decoder, ResNet50 and keras-hub's GPT-2, BERT, Llama and ViT;
`reinitialize` then `audit` agree, and `mimetic` sets the same weights to the bit."""
import json
import subprocess
import sys

import pytest
import recipe_backend_script as script


@pytest.mark.slow
def test_structures_and_recipes_agree_on_tensorflow_jax_and_torch(subprocess_env, tmp_path):
    runs = {backend: subprocess.Popen(
        [sys.executable, script.__file__, str(tmp_path / f"{backend}.json")],
        env=dict(subprocess_env, KERAS_BACKEND=backend), stderr=subprocess.PIPE, text=True)
        for backend in ("jax", "torch")}
    reference = json.loads(json.dumps(script.main()))  # TensorFlow, in this process
    # The reference itself: a branch per block, an attention per layer, the recipes hold.
    counts = {name: (len(s["branches"]), len(s["attention"]))
              for name, s in reference["structures"].items()}
    assert counts == {"residual_mlp": (4, 0), "decoder": (6, 3), "resnet50": (16, 0),
                      "gpt2": (4, 2), "bert": (4, 2), "llama": (4, 2), "vit": (4, 2)}
    assert {k: v for k, v in reference["recipes"].items() if k != "mimetic"} == {
        "stock_gpt2": reference["recipes"]["stock_gpt2"], "gpt2": [], "fixup": [], "vit": []}
    assert reference["recipes"]["mimetic"][0] == 2
    for backend, run in runs.items():
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, (backend, stderr[-3000:])
        with open(tmp_path / f"{backend}.json") as f:
            other = json.load(f)
        for name, structure in reference["structures"].items():
            assert other["structures"][name] == structure, (backend, name)
        assert other["recipes"] == reference["recipes"], backend
