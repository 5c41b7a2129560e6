"""SignalMonitor(images=True): the pictures in TensorBoard, when they are written, and the
drawing functions on their own, NaN, Inf and zero included."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_initkit.callbacks import SignalMonitor, signal_images
from keras_initkit.callbacks.signal_monitor import HEAT_MAP_TAG, PROFILE_TAG

L = keras.layers


def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def mlp(activation="relu"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), L.Dense(32, activation=activation),
                              L.Dense(32, activation=activation), L.Dense(2)], name="mlp")
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def pictures(log_dir, tag):
    """`[(step, decoded RGB array, (width, height) as written)]` of an image tag."""
    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0}).Reload()
    if tag not in events.Tags()["tensors"]:
        return []
    out = []
    for event in events.Tensors(tag):
        width, height, png = event.tensor_proto.string_val
        out.append((event.step, tf.io.decode_png(png).numpy(), (int(width), int(height))))
    return out


def colours(image):
    return {tuple(c) for c in image.reshape(-1, image.shape[-1])}


def red_marks(image):
    """Pixels of the profile's red marks (matplotlib's "tab:red", 214, 39, 40, antialiased);
    the lines are blue and the text black."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r > 150) & (g < 110) & (b < 110)))


def test_pictures_at_the_first_probe_every_kth_and_the_last_of_each_fit(tmp_path):
    x, y = data()
    model = mlp()
    monitor = SignalMonitor(tmp_path, probe_data=(x[:64], y[:64]), every_n_steps=2,
                            images=True, image_every_n_probes=3)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])  # 16 steps
    assert monitor.history["step"] == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    # Probes 0, 3 and 6 (steps 0, 6, 12), and the last of the fit (step 16, probe 8).
    assert [step for step, *_ in pictures(tmp_path, PROFILE_TAG)] == [0, 6, 12, 16]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])  # 8 more
    assert monitor.history["step"][9:] == [18, 20, 22, 24]
    # Probe 9 (step 18); the fit's last, probe 12 (step 24), is a third one: drawn once.
    profiles = pictures(tmp_path, PROFILE_TAG)
    heat_maps = pictures(tmp_path, HEAT_MAP_TAG)
    assert [step for step, *_ in profiles] == [0, 6, 12, 16, 18, 24]
    assert [step for step, *_ in heat_maps] == [0, 6, 12, 16, 18, 24]

    width, height = signal_images.PROFILE_SIZE
    for _, image, size in profiles:
        assert image.shape == (height, width, 3) and size == (width, height)
        assert len(colours(image)) > 10  # axes, labels, lines: a drawn figure
    layers = len(monitor.history["activations"])
    assert layers == 3
    for step, image, size in heat_maps:
        probes = monitor.history["step"].index(step) + 1  # the history so far
        # 8 pixels a layer (rows) and a probe (columns), under 1024 a side.
        assert image.shape == (8 * layers, 8 * probes, 3) and size == (8 * probes, 8 * layers)
        assert len(colours(image)) > 1 or probes == 1
    assert len(colours(heat_maps[-1][1])) > 1
    # The images plugin's metadata, as TensorBoard's Images tab reads it.
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    assert set(events.PluginTagToContent("images")) == {PROFILE_TAG, HEAT_MAP_TAG}


def test_images_false_writes_no_picture(tmp_path):
    x, y = data(128)
    monitor = SignalMonitor(tmp_path, probe_data=x[:32], every_n_steps=1)
    mlp().fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    assert events.Tags()["tensors"]  # the scalars are there
    assert not any(tag.startswith("signal/") for tag in events.Tags()["tensors"])
    with pytest.raises(KeyError):
        events.PluginTagToContent("images")


def test_nan_in_the_probe_batch_is_drawn_black_and_red(tmp_path):
    x, y = data(128)
    probe_x = x[:32].copy()
    probe_x[0, 0] = np.nan  # every layer's output then holds NaN (tanh keeps it; ReLU not)
    monitor = SignalMonitor(tmp_path, probe_data=probe_x, every_n_steps=2, images=True,
                            on_finding=lambda finding: None)
    mlp("tanh").fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    (_, heat_map, _), *_ = pictures(tmp_path, HEAT_MAP_TAG)
    assert colours(heat_map) == {signal_images.NONFINITE_RGB}
    (_, profile, _), *_ = pictures(tmp_path, PROFILE_TAG)
    assert red_marks(profile) > 0


def test_a_failure_to_draw_warns_and_training_goes_on(tmp_path, monkeypatch):
    def broken(table, *args, **kwargs):
        raise RuntimeError("no canvas today")

    monkeypatch.setattr(signal_images, "heat_map", broken)
    x, y = data(128)
    monitor = SignalMonitor(tmp_path, probe_data=x[:32], every_n_steps=2, images=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = mlp().fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 2
    # The first probe's pictures and the last's (tried once each), nothing else.
    assert [str(w.message) for w in caught if "images" in str(w.message)] == [
        f"SignalMonitor: the images at step {step} failed and were skipped (RuntimeError: "
        "no canvas today)." for step in (0, 8)]
    assert monitor.history["step"] == [0, 2, 4, 6, 8]  # every probe recorded
    assert pictures(tmp_path, HEAT_MAP_TAG) == []


@pytest.mark.parametrize("kwargs,error,word", [
    ({"images": "yes"}, TypeError, "images"),
    ({"images": 1}, TypeError, r"images=1\b"),
    ({"images": True, "image_every_n_probes": 0}, ValueError, "image_every_n_probes=0"),
    ({"images": True, "image_every_n_probes": 2.5}, ValueError, "image_every_n_probes"),
    ({"images": True, "image_every_n_probes": True}, ValueError, "image_every_n_probes"),
])
def test_bad_image_arguments(tmp_path, kwargs, error, word):
    with pytest.raises(error, match=word):
        SignalMonitor(tmp_path, probe_data=np.zeros((4, 16), "float32"), **kwargs)


# The drawing functions alone.

def test_heat_map_colours_nan_inf_zero_missing_and_the_scale():
    low, high = signal_images.HEAT_MAP_DECADES
    table = np.ma.array([[1.0, np.nan, np.inf, 0.0, -1.0],
                         [10.0 ** low, 10.0 ** high, 1e-30, 1e30, -np.inf]],
                        mask=[[False, False, False, False, True]] + [[False] * 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from log10 of 0 or NaN
        image = signal_images.heat_map(table)
    assert image.dtype == np.uint8 and image.shape == (16, 40, 3)
    cell = lambda row, column: tuple(image[8 * row + 4, 8 * column + 4])  # noqa: E731
    lookup = signal_images._lookup(signal_images.HEAT_MAP_COLORMAP)
    assert cell(0, 0) == tuple(lookup[128])  # 1: the middle of the scale
    assert cell(0, 1) == cell(0, 2) == cell(1, 4) == signal_images.NONFINITE_RGB
    assert cell(0, 3) == signal_images.ZERO_RGB
    assert cell(0, 4) == signal_images.MISSING_RGB  # masked
    assert cell(1, 0) == cell(1, 2) == tuple(lookup[0])  # the low end, and beyond it
    assert cell(1, 1) == cell(1, 3) == tuple(lookup[255])
    # Every cell is an 8 x 8 block of one colour.
    assert all(len(colours(image[r:r + 8, c:c + 8])) == 1
               for r in range(0, 16, 8) for c in range(0, 40, 8))


@pytest.mark.parametrize("layers,probes", [(1, 1), (3, 200), (500, 4), (3000, 2)])
def test_heat_map_size_grows_with_layers_and_probes_up_to_1024(layers, probes):
    table = np.arange(1, layers * probes + 1, dtype=float).reshape(layers, probes)
    image = signal_images.heat_map(table)
    side = lambda n: min(8 * n, 1024)  # noqa: E731
    assert image.shape == (side(layers), side(probes), 3)
    assert signal_images.heat_map_side(layers) == side(layers)
    if layers * probes > 1:  # the first and the last cell always show, however many
        last = signal_images.heat_map(np.ma.masked_array(table, mask=table == table.max()))
        assert tuple(last[-1, -1]) == signal_images.MISSING_RGB
        assert tuple(last[0, 0]) != signal_images.MISSING_RGB


def test_heat_map_refuses_an_empty_table_and_bad_decades():
    with pytest.raises(ValueError, match=r"table.*shape \(0, 3\)"):
        signal_images.heat_map(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="decades"):
        signal_images.heat_map(np.ones((2, 2)), decades=(1, 1))


def test_signal_profile_marks_nan_inf_zero_and_skips_negative():
    draw = signal_images.SignalProfile()
    clean = draw([1.0, 0.5, 0.2, 0.1], [1e-3, 1e-2, 1e-1, 1.0], title="step 0")
    width, height = signal_images.PROFILE_SIZE
    assert clean.dtype == np.uint8 and clean.shape == (height, width, 3)
    assert red_marks(clean) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        marked = draw([1.0, np.nan, 0.0, np.inf], [-1.0, 0.0, np.inf, 1e-2], title="step 1")
        empty = draw([np.nan] * 4, [-1.0] * 4, title="nothing finite")
    assert marked.shape == empty.shape == clean.shape
    assert red_marks(marked) > 0 and red_marks(empty) > 0  # 3 x and 2 triangles; 4 x
    assert not np.array_equal(marked, clean)
    # Drawn again, the same values give the same picture (the kept frame is reused).
    np.testing.assert_array_equal(draw([1.0, 0.5, 0.2, 0.1], [1e-3, 1e-2, 1e-1, 1.0],
                                       title="step 0"), clean)
    with pytest.raises(ValueError, match="one value per layer"):
        draw([1.0, 2.0], [1.0])


def test_history_table_aligns_layers_that_ran_later_and_marks_nonfinite_outputs():
    history = {"step": [0, 5, 10], "activations": {
        "a": {"rms": [1.0, 2.0, 3.0], "nan_count": [0, 4, 0], "inf_count": [0, 0, 0]},
        "b": {"rms": [0.5], "nan_count": [0], "inf_count": [1]},  # first ran at step 10
    }}
    table = signal_images.history_table(history)
    assert table.shape == (2, 3)
    np.testing.assert_array_equal(np.ma.getmaskarray(table), [[0, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(table[0].data, [1.0, np.inf, 3.0])
    assert table[1, 2] == np.inf
