"""Pictures of a network's signal, as uint8 RGB arrays for TensorBoard's Images tab.

Two pictures, each drawn from plain numbers (nothing of Keras or TensorBoard),
so the monitor, a notebook and a test draw them alike:

- `SignalProfile`: activation RMS and backward-gradient RMS per layer, over
  depth, at one step. matplotlib's Agg canvas, never pyplot: the frame (axes,
  ticks, labels) is drawn once and kept, and each call redraws only the data,
  about a hundredth of a full draw.
- `heat_map`: a layer x probe grid of log10 activation RMS, coloured pixel by
  pixel through a colormap with no figure, so a 500-layer model is one
  picture and its cost is that of indexing an array.

A zero or a non-finite value is marked, never an error.
"""
import functools
import math

import numpy as np

# The heat map's colour scale, in decades of RMS. Fixed, so that a colour means the same
# value at every step and in every model: 1 (the scale variance-preserving schemes keep)
# in the middle, vanishing in blue, exploding in red; beyond the range, the end colours.
HEAT_MAP_DECADES = (-3.0, 3.0)
HEAT_MAP_COLORMAP = "RdYlBu_r"
# Pixels per layer (rows) and per probe (columns) while the picture is under
# HEAT_MAP_MAX_SIDE on that side; beyond it the cells shrink, and past one pixel a cell,
# evenly spaced ones are shown (the last always).
HEAT_MAP_CELL = 8
HEAT_MAP_MAX_SIDE = 1024
# Marks outside the colormap: an output that held NaN or Inf, an RMS of exactly 0 (every
# entry zero), and a cell with no value (a layer not probed at that step).
NONFINITE_RGB = (0, 0, 0)
ZERO_RGB = (128, 128, 128)
MISSING_RGB = (255, 255, 255)

PROFILE_SIZE = (480, 320)  # width, height in pixels
_DPI = 80
_PANELS = ("activation RMS", "backward gradient RMS\n(d loss / d output)")


def heat_map_side(n):
    """Pixels on one side of the heat map for `n` layers (height) or probes (width):
    `HEAT_MAP_CELL` each, at most `HEAT_MAP_MAX_SIDE` in all."""
    return min(HEAT_MAP_CELL * n, HEAT_MAP_MAX_SIDE)


def heat_map(table, decades=HEAT_MAP_DECADES, colormap=HEAT_MAP_COLORMAP):
    """The layer x probe picture of a table of RMS values.

    Args:
        table: Array of shape (layers, probes): row i is the i-th layer in
            depth order (drawn at the top first), column j the j-th probe.
            NaN or Inf means the output held NaN or Inf (drawn black), 0 an
            all-zero output (grey). A masked entry (`numpy.ma`) or a negative
            finite one has no value (white).
        decades: `(low, high)`: log10 of the RMS at the two ends of the
            colour scale; values beyond take the end colours.
        colormap: Name of a matplotlib colormap.

    Returns:
        uint8 array of shape (heat_map_side(layers), heat_map_side(probes), 3).

    Example:
    >>> rms = np.array([[1.0, 0.5], [0.1, 0.0], [10.0, np.nan]])
    >>> heat_map(rms).shape
    (24, 16, 3)
    """
    values = np.asarray(np.ma.getdata(table), dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError("`table` must have shape (layers, probes), at least one of each; "
                         f"received shape {values.shape}.")
    low, high = float(decades[0]), float(decades[1])
    if not low < high:
        raise ValueError(f"`decades` must be (low, high) with low < high; received "
                         f"decades={decades!r}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (np.log10(values) - low) / (high - low)
    index = np.rint(255 * np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)).astype(np.intp)
    cells = _lookup(colormap)[index]
    cells[values == 0] = ZERO_RGB
    cells[values < 0] = MISSING_RGB
    cells[~np.isfinite(values)] = NONFINITE_RGB
    cells[np.ma.getmaskarray(table)] = MISSING_RGB
    rows = _pixels_to_cells(values.shape[0], heat_map_side(values.shape[0]))
    columns = _pixels_to_cells(values.shape[1], heat_map_side(values.shape[1]))
    return cells[rows][:, columns]


def _pixels_to_cells(n, side):
    """The cell each of `side` pixels shows: runs of equal length (to a pixel) while
    side >= n, else evenly spaced cells, the first and the last included."""
    if side >= n:
        return np.arange(side) * n // side
    return np.rint(np.linspace(0, n - 1, side)).astype(np.intp)


@functools.lru_cache(maxsize=4)
def _lookup(colormap):
    import matplotlib

    rgba = matplotlib.colormaps[colormap](np.linspace(0.0, 1.0, 256))
    return np.rint(255 * rgba[:, :3]).astype(np.uint8)


def history_table(history, stat="rms"):
    """One statistic of every layer at every probe of a `SignalMonitor.history`.

    Args:
        history: `SignalMonitor.history`.
        stat: A field of `keras_initkit.diagnostics.stats.ACTIVATION_FIELDS`.

    Returns:
        A masked float array of shape (layers, probes), layers in the order
        they first ran. An output that held NaN or Inf reads Inf; a layer
        absent from the earlier probes (it first ran later) is masked there.
    """
    steps = len(history["step"])
    series = list(history["activations"].values())
    table = np.ma.masked_all((len(series), steps), dtype=np.float64)
    for row, values in zip(table, series):
        # A layer's series holds its latest probes: a layer is in every probe after its first.
        n = len(values[stat])
        row[steps - n:] = nonfinite_as_inf(values[stat], values["nan_count"],
                                           values["inf_count"])
    return table


def nonfinite_as_inf(value, nan_count, inf_count):
    """`value` (a statistic of finite entries), or Inf where its output held NaN or Inf.

    The probe's moments skip NaN and Inf, so an RMS alone would hide them.
    """
    nonfinite = np.asarray(nan_count, dtype=np.float64) + np.asarray(inf_count,
                                                                     dtype=np.float64)
    return np.where(nonfinite > 0, np.inf, np.asarray(value, dtype=np.float64))


class SignalProfile:
    """Draws the signal-propagation picture: two log-scale panels over depth.

    The top panel is each layer's activation RMS, the bottom one the RMS of
    the loss gradient with respect to its output (the signal backpropagation
    carries), layers in the order they ran. A red x at a panel's top edge
    marks a non-finite value, a red triangle at its bottom edge a zero; a
    negative value (a statistic that does not apply) is left out.

    The figure is kept between calls: its frame is drawn again only when the
    number of layers changes or the values leave the panel's range (which
    spans their decades and one more on each side, and shrinks back only once
    it is more than four decades wider than needed: a value that wavers
    across a power of ten redraws nothing). Not thread-safe.

    Args:
        size: `(width, height)` of the picture in pixels.

    Example:
    >>> draw = SignalProfile()
    >>> image = draw([1.0, 0.7, 0.2], [0.01, 0.05, 0.3], title="step 0")
    >>> image.shape
    (320, 480, 3)
    """

    def __init__(self, size=PROFILE_SIZE):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        width, height = size
        self.figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        self.canvas = FigureCanvasAgg(self.figure)
        # Fixed margins, not a layout engine: the frame is drawn for a fixed data area.
        self.figure.subplots_adjust(left=0.16, right=0.97, top=0.92, bottom=0.12, hspace=0.1)
        self.axes = self.figure.subplots(2, 1, sharex=True)
        self._artists = []  # per panel: the line, the zero marks, the non-finite marks
        for axis, label in zip(self.axes, _PANELS):
            axis.set_yscale("log")
            axis.set_ylabel(label, fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(True, alpha=0.3)
            edge = axis.get_xaxis_transform()  # x in data, y in the panel's height
            self._artists.append((
                axis.plot([], [], marker="o", markersize=3, linewidth=1, animated=True)[0],
                axis.plot([], [], "v", color="tab:red", transform=edge, animated=True)[0],
                axis.plot([], [], "x", color="tab:red", markeredgewidth=2, transform=edge,
                          animated=True)[0]))
        self.axes[1].set_xlabel("layer (order of depth)", fontsize=8)
        self.axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
        self.title = self.axes[0].set_title("", fontsize=9)
        self.title.set_animated(True)
        self._frame = None  # (layers, decades of each panel)
        self._background = None

    def __call__(self, activation_rms, gradient_rms, title=""):
        """The picture of one probe.

        Args:
            activation_rms: One value per layer, in depth order.
            gradient_rms: One value per layer, the same layers.
            title: Text above the top panel (the step, say).

        Returns:
            uint8 array of shape (height, width, 3).
        """
        panels = [np.asarray(v, dtype=np.float64).reshape(-1)
                  for v in (activation_rms, gradient_rms)]
        if panels[0].size == 0 or panels[0].size != panels[1].size:
            raise ValueError("`activation_rms` and `gradient_rms` must hold one value per "
                             f"layer, at least one; received {panels[0].size} and "
                             f"{panels[1].size} values.")
        n = panels[0].size
        frame = (n,) + tuple(_decades(v, None if self._frame is None else self._frame[1 + i])
                             for i, v in enumerate(panels))
        if frame != self._frame:
            self.axes[0].set_xlim(-0.5, n - 0.5)
            for axis, (low, high) in zip(self.axes, frame[1:]):
                axis.set_ylim(10.0 ** low, 10.0 ** high)
            self.canvas.draw()  # the frame alone: the animated artists are left out
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
            self._frame = frame
        else:
            self.canvas.restore_region(self._background)
        depth = np.arange(n)
        for axis, values, (line, zeros, nonfinite) in zip(self.axes, panels, self._artists):
            line.set_markersize(3 if n <= 100 else 0)  # past 100, markers merge into a band
            line.set_data(depth, np.where(np.isfinite(values) & (values > 0), values, np.nan))
            zeros.set_data(depth[values == 0], np.full(np.count_nonzero(values == 0), 0.03))
            bad = ~np.isfinite(values)
            nonfinite.set_data(depth[bad], np.full(np.count_nonzero(bad), 0.97))
            for artist in (line, zeros, nonfinite):
                axis.draw_artist(artist)
        self.title.set_text(title)
        self.axes[0].draw_artist(self.title)
        return np.ascontiguousarray(np.asarray(self.canvas.buffer_rgba())[..., :3])


def _decades(values, current):
    """`(low, high)`: integer log10 limits of a panel, `current` kept while it still fits."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return current or (-1, 1)
    low = math.floor(math.log10(positive.min()))
    high = max(math.ceil(math.log10(positive.max())), low + 1)
    if current is not None and current[0] <= low and current[1] >= high and \
            (current[1] - current[0]) - (high - low) <= 4:
        return current
    return low - 1, high + 1


__all__ = ["SignalProfile", "heat_map", "heat_map_side", "history_table", "nonfinite_as_inf"]
