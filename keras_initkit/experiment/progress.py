"""Progress over the cells of an experiment: a bar on a terminal, plain lines in a log."""
import sys
import time

MODES = ("auto", "bar", "lines", "quiet")


class Progress:
    """Counts finished cells and the epochs of the running ones, and estimates the time left.

    The estimate is the wall time so far scaled by the work left: work is counted in
    epochs (a finished cell counts all of its epochs, a running one those it has done), each
    weighted by its cell's relative cost, so it holds for cells that run side by side in
    worker processes too, and for a depth sweep whose deep cells take longer.

    Args:
        total: Number of cells.
        epochs: Epochs per cell.
        stream: Where it writes; default `sys.stdout`.
        mode: `"bar"` (one line redrawn in place), `"lines"` (one line per finished cell),
            `"quiet"` (nothing), or `"auto"`: a bar when `stream` is a terminal, else lines.
        costs: `{cell label: relative cost}` (e.g. its depth); default 1 each.

    Example:
    >>> progress = Progress(total=2, epochs=30)
    >>> progress.epoch("he, seed 0", 1)
    >>> progress.done("he, seed 0", "val_accuracy 0.95")
    """

    def __init__(self, total, epochs, stream=None, mode="auto", costs=None):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; received mode={mode!r}.")
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode, self.total, self.epochs = mode, total, epochs
        self.costs = costs or {}
        self.finished, self.running = 0, {}  # running: {cell label: epochs done}
        self._work_done = 0.0  # of the finished cells, in cost-weighted epochs
        self._done = set()  # a worker's last epoch report may arrive after its cell's end
        self.start = time.monotonic()
        self._width = 0  # of the bar's last line, to blank it out

    def epoch(self, label, epochs_done):
        """`label`'s cell has finished `epochs_done` epochs."""
        if label in self._done:
            return
        self.running[label] = epochs_done
        if self.mode == "bar":
            self._draw(label)

    def done(self, label, summary=""):
        """`label`'s cell has finished; `summary` says how it ended."""
        self.running.pop(label, None)
        self._done.add(label)
        self.finished += 1
        self._work_done += self.costs.get(label, 1) * self.epochs
        if self.mode == "lines":
            left = self.time_left()
            self.stream.write(f"[{self.finished}/{self.total}] {label}: {summary}"
                              f"{'' if left is None else f'; {_clock(left)} left'}\n")
            self.stream.flush()
        elif self.mode == "bar":
            self._draw(label)

    def close(self):
        """Ends the bar's line."""
        if self.mode == "bar" and self._width:
            self.stream.write("\n")
            self.stream.flush()

    def time_left(self):
        """Seconds left, from the wall time so far and the epochs done; None before any."""
        done = self._work()
        if not done:
            return None
        return (time.monotonic() - self.start) * (self._total_work() - done) / done

    def _work(self):
        return self._work_done + sum(self.costs.get(label, 1) * epochs
                                     for label, epochs in self.running.items())

    def _total_work(self):
        known = sum(self.costs.values())
        return (known + self.total - len(self.costs)) * self.epochs

    def _draw(self, label):
        fraction = self._work() / self._total_work()
        filled = int(24 * fraction)
        left = self.time_left()
        epoch = self.running.get(label)
        line = (f"[{'=' * filled}{' ' * (24 - filled)}] {self.finished}/{self.total} cells"
                f"  {label}{'' if epoch is None else f' epoch {epoch}/{self.epochs}'}"
                f"  {_clock(time.monotonic() - self.start)} elapsed"
                f"{'' if left is None else f', {_clock(left)} left'}")
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)


def _clock(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
