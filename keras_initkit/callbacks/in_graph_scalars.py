"""TensorBoard scalars written inside the probe's compiled call: the monitor's in-graph hook."""
import tensorflow as tf

from .event_writer import scalar_tags


class InGraphScalars:
    """Writes chosen probe statistics as TensorBoard scalars, all tags in one event.

    Each value is what `tf.summary.scalar` writes (a float32 scalar tensor with
    the scalars plugin's metadata), but the one Summary proto that holds them
    all is serialized in the graph by `encode_proto` and written by one op:
    one `tf.summary.scalar` per tag, each with its own condition and scope,
    cost half a small MLP's probe. The metadata goes only into the events where
    `first` (a bool tensor) is true: TensorBoard reads a tag's metadata from
    its first event, as TF1's `FileWriter` relied on when it wrote it once per
    tag; repeating it took a fifth of the write's time inside `fit`.

    Args:
        writer: A `tf.summary` writer.
        activation_fields: Fields of `stats.ACTIVATION_FIELDS` to write for
            every layer, tagged `activation/<layer path>/<field>`.
        weight_fields: Fields of `stats.WEIGHT_FIELDS`, tagged
            `weight/<weight path>/<field>`.

    Numbers that assumed no NaN or Inf wrongly are not written: the probe's
    exact pass calls the hook again with the right ones. `extra`, `(tags,
    values, described)` computed in the same call (the update ratios), joins
    the same event where its values are finite, with the metadata where
    `described` (a bool tensor per tag) is false.
    """

    def __init__(self, writer, activation_fields, weight_fields):
        self.writer = writer
        self.activation_fields, self.weight_fields = activation_fields, weight_fields

    def tags(self, tables):
        """`(tag, index in the flat activation + weight table)` of every scalar written."""
        return scalar_tags(tables.activation_paths, tables.kinds, tables.weight_paths,
                           self.activation_fields, self.weight_fields)

    def __call__(self, tables, step, first, extra=((), None, None)):
        tagged, (extra_tags, extra_values, described) = self.tags(tables), extra
        if not tagged and not extra_tags:
            return
        values = tf.gather(tf.concat([tf.reshape(tables.activations, (-1,)),
                                      tf.reshape(tables.weights, (-1,))], 0),
                           [at for _, at in tagged])
        entries = _entries([tag for tag, _ in tagged], values, first)
        if extra_tags:
            entries = tf.concat([entries, tf.boolean_mask(
                _entries(extra_tags, extra_values, tf.logical_not(described)),
                tf.math.is_finite(extra_values))], 0)
        summary = tf.io.encode_proto(
            sizes=tf.reshape(tf.size(entries), (1, 1)), values=[entries[None, :]],
            field_names=["value"], message_type="tensorflow.Summary")
        with tf.summary.record_if(tables.all_finite), self.writer.as_default(step=step):
            tf.summary.experimental.write_raw_pb(summary[0])


def _entries(tags, values, with_metadata):
    """The serialized `Summary.Value {tag, metadata, tensor}` of each scalar, the metadata
    where `with_metadata` (a bool tensor, one for all or one per tag) is true."""
    from tensorboard.plugins.scalar.metadata import create_summary_metadata

    n = len(tags)
    if not n:
        return tf.zeros((0,), tf.string)
    scalars = tf.io.encode_proto(  # TensorProto {dtype: DT_FLOAT, float_val: [v]}
        sizes=tf.ones((n, 2), tf.int32), values=[
            tf.fill((n, 1), tf.float32.as_datatype_enum), tf.reshape(values, (n, 1))],
        field_names=["dtype", "float_val"], message_type="tensorflow.TensorProto")
    metadata = create_summary_metadata(display_name=None, description=None)
    described = tf.broadcast_to(  # 1: the field, 0: none
        tf.reshape(tf.cast(with_metadata, tf.int32), (-1, 1)), (n, 1))
    return tf.io.encode_proto(
        sizes=tf.concat([tf.ones((n, 1), tf.int32), described, tf.ones((n, 1), tf.int32)], 1),
        values=[tf.constant(tags)[:, None], tf.fill((n, 1), metadata.SerializeToString()),
                scalars[:, None]],
        field_names=["tag", "metadata", "tensor"], message_type="tensorflow.Summary.Value")
