"""TensorBoard events from host values, with TensorBoard's own writer: the monitor's on JAX
and PyTorch, where TensorFlow is not the backend (and is not imported)."""
import io
import time

import numpy as np

from ..diagnostics import stats

# What goes to TensorBoard per row kind, beside the activation fields every layer gets: the
# token cosine for sequences, the attention entropy (under `attention/`) for attention
# probabilities.
_PER_KIND = {stats.SEQUENCE: (("activation", "token_cosine", "token_cosine"),),
             stats.ATTENTION: (("attention", "attention_entropy", "entropy"),)}


def scalar_tags(activation_paths, kinds, weight_paths, activation_fields, weight_fields):
    """`(tag, index in the flat activation + weight table)` of every scalar the monitor
    writes: `activation/<layer path>/<field>`, `weight/<weight path>/<field>`, and the
    extras of sequence and attention rows. The same on every backend."""
    width, out = len(stats.ACTIVATION_FIELDS), []
    kinds = list(kinds) or [None] * len(activation_paths)
    for i, (path, kind) in enumerate(zip(activation_paths, kinds)):
        for field in activation_fields:
            out.append((f"activation/{path}/{field}",
                        i * width + stats.ACTIVATION_FIELDS.index(field)))
        for prefix, field, name in _PER_KIND.get(kind, ()):
            out.append((f"{prefix}/{path}/{name}",
                        i * width + stats.ACTIVATION_FIELDS.index(field)))
    offset = len(activation_paths) * width
    for i, path in enumerate(weight_paths):
        for field in weight_fields:
            out.append((f"weight/{path}/{field}", offset + i * len(stats.WEIGHT_FIELDS)
                        + stats.WEIGHT_FIELDS.index(field)))
    return out


class EventWriter:
    """Scalars, histograms, text and PNG images, each written as `tf.summary` writes it
    (the same plugin data, so TensorBoard shows them alike), from NumPy values.

    Args:
        log_dir: The folder of the event file.
        max_queue: Events held before a write to disk.
    """

    def __init__(self, log_dir, max_queue=100):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._events = EventFileWriter(log_dir, max_queue_size=max_queue)

    def _emit(self, values, step):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        self._events.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))

    def scalars(self, tagged_values, step):
        """`[(tag, number)]`, in one event."""
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb

        self._emit([scalar_pb(tag, np.float32(value)).value[0]
                    for tag, value in tagged_values], step)

    def histogram(self, tag, values, step):
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb

        self._emit(histogram_pb(tag, np.asarray(values, np.float64)).value, step)

    def text(self, tag, text, step):
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._emit(text_pb(tag, text).value, step)

    def image(self, tag, picture, step, description=None):
        """`picture`: a (height, width, channels) uint8 array, stored as PNG."""
        from PIL import Image
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2
        from tensorboard.plugins.image.metadata import create_summary_metadata

        png = io.BytesIO()
        Image.fromarray(np.asarray(picture).squeeze()).save(png, "PNG", compress_level=1)
        height, width = picture.shape[:2]
        tensor = tensor_pb2.TensorProto(
            dtype=7,  # DT_STRING: [width, height, PNG], as tf.summary.image writes it
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=3)]),
            string_val=[str(width).encode(), str(height).encode(), png.getvalue()])
        self._emit([summary_pb2.Summary.Value(
            tag=tag, tensor=tensor,
            metadata=create_summary_metadata(display_name=None, description=description))],
            step)

    def flush(self):
        self._events.flush()
