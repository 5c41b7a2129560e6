"""SignalMonitor on big models: a 500-layer MLP and ResNet50 train with it (issue 6)."""
import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_initkit.callbacks import SignalMonitor

L = keras.layers


def tags(folder):
    return set(EventAccumulator(str(folder), size_guidance={"tensors": 0}).Reload()
               .Tags()["tensors"])


@pytest.mark.slow
def test_a_500_layer_mlp_trains_with_the_monitor(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,))] + [
        L.Dense(16, activation="relu", kernel_initializer="kit_he") for _ in range(500)] +
        [L.Dense(2)], name="deep")
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    monitor = SignalMonitor(tmp_path, every_n_steps=2, on_finding=lambda finding: None)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history["step"] == [0, 2, 4]
    assert len(monitor.history["activations"]) == 501
    assert len(monitor.history["weights"]) == 1002
    last = model.layers[-2].path  # a grouped layer's row is its own: differs from the first
    first_std = monitor.history["activations"][model.layers[0].path]["std"]
    assert monitor.history["activations"][last]["std"] != first_std
    written = tags(tmp_path)
    assert f"activation/{last}/std" in written
    assert f"weight/{model.layers[0].path}/kernel/grad_norm" in written


@pytest.mark.slow
def test_resnet50_trains_with_the_monitor_and_histograms_of_chosen_layers(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=4)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 4
    monitor = SignalMonitor(tmp_path, every_n_steps=1, histograms=True,
                            layers=r"conv5_block3_[123]_conv$", on_finding=lambda finding: None)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history["step"] == [0, 1, 2]
    assert len(monitor.history["activations"]) == len(model.layers) - 1  # all but the Input
    written = tags(tmp_path)
    chosen = {f"{kind}/{name}" for name in ("conv5_block3_1_conv", "conv5_block3_2_conv",
                                            "conv5_block3_3_conv") for kind in ("activation",)}
    histograms = {t for t in written if t.startswith("activation/") and t.count("/") == 1}
    assert histograms == chosen
