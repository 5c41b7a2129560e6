"""The base models of `initkit compare --arch mlp | cnn | resmlp | transformer`, and the
sequence task the transformer trains on, generated in code.

- `mlp`: `depth` Dense layers of `width` units and one activation, and a linear head: the
  plain stack of Glorot et al. 2010 and He et al. 2015.
- `cnn`: `depth` 3x3 convolutions of `width` filters at the input's resolution, global
  average pooling and a linear head: the plain convolutional stack of He et al. 2015.

- `residual_mlp`: a stem, then `depth` blocks of Dense-activation-Dense added back to the
  stream, no normalization: the network Fixup and SkipInit were invented for; under He alone
  its stream grows block over block.
- `decoder`: a GPT-style pre-LayerNorm decoder (token and position embeddings, `depth` blocks
  of causal self-attention and a GELU feed-forward network, each added back to the stream, a
  final LayerNorm and a linear readout), every kernel and embedding drawn N(0, 0.02^2) as
  keras-hub's GPT-2 draws them: no depth scaling of the residual projections.
- `delayed_copy`: sequences of random tokens; the target at position t is the token at
  t - delay (0, a token of its own, before that). A causal decoder must attend `delay`
  positions back to solve it; nothing else in the input predicts the target.
"""
import numbers

import keras
import numpy as np

L = keras.layers


def check_sizes(**sizes):
    """Raises a ValueError naming the first size that is not an integer >= 1."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; received {name}={value!r}.")


def _check_activation(activation):
    try:
        keras.activations.get(activation)
    except ValueError:
        raise ValueError(f"Unknown activation {activation!r}; give a Keras activation name "
                         "such as 'relu', 'tanh', 'selu' or 'gelu'.") from None


def mlp(input_shape, outputs, depth=20, width=64, activation="relu"):
    """`depth` Dense(width, activation) layers on the flattened input, and a linear head."""
    check_sizes(depth=depth, width=width)
    _check_activation(activation)
    layers = [keras.Input(input_shape), L.Flatten(name="flatten")]
    layers += [L.Dense(width, activation=activation, name=f"dense_{i + 1}")
               for i in range(depth)]
    return keras.Sequential(layers + [L.Dense(outputs, name="head")], name="mlp")


def cnn(input_shape, outputs, depth=20, width=32, activation="relu"):
    """`depth` Conv2D(width, 3x3, same padding, activation) layers on `(height, width,
    channels)` images, global average pooling, and a linear head."""
    check_sizes(depth=depth, width=width)
    _check_activation(activation)
    if len(input_shape) != 3:
        raise ValueError(f"The cnn takes images of shape (height, width, channels); received "
                         f"samples of shape {tuple(input_shape)}.")
    layers = [keras.Input(input_shape)]
    layers += [L.Conv2D(width, 3, padding="same", activation=activation, name=f"conv_{i + 1}")
               for i in range(depth)]
    return keras.Sequential(layers + [L.GlobalAveragePooling2D(name="pool"),
                                      L.Dense(outputs, name="head")], name="cnn")


def residual_mlp(input_shape, outputs, depth=20, width=64, activation="relu"):
    """`depth` residual blocks `x + Dense(Dense(x, activation))`, no normalization."""
    check_sizes(depth=depth, width=width)
    _check_activation(activation)
    inputs = keras.Input(input_shape)
    x = L.Dense(width, activation=activation, name="stem")(L.Flatten(name="flatten")(inputs))
    for i in range(depth):
        branch = L.Dense(width, activation=activation, name=f"block_{i + 1}_in")(x)
        branch = L.Dense(width, name=f"block_{i + 1}_out")(branch)
        x = L.Add(name=f"block_{i + 1}_add")([x, branch])
    return keras.Model(inputs, L.Dense(outputs, name="head")(x), name="resmlp")


@keras.saving.register_keras_serializable(package="keras_initkit")
class PositionEmbedding(L.Layer):
    """Adds a learned embedding of each position to a `(batch, length, width)` sequence."""

    def __init__(self, length, initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.length = length
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.length, input_shape[-1]),
                                          initializer=self.initializer, name="embeddings")

    def call(self, x):
        return x + self.embeddings[None, : x.shape[1]]

    def get_config(self):
        return {**super().get_config(), "length": self.length,
                "initializer": keras.initializers.serialize(self.initializer)}


def decoder(length, vocabulary, depth=4, width=64, heads=4):
    """A GPT-style decoder: `depth` pre-LayerNorm blocks of causal attention and GELU FFN."""
    check_sizes(length=length, vocabulary=vocabulary, depth=depth, width=width, heads=heads)
    if width % heads:
        raise ValueError(f"`width` must be a multiple of `heads`; received width={width}, "
                         f"heads={heads}.")
    normal = keras.initializers.RandomNormal(stddev=0.02)
    tokens = keras.Input((length,), dtype="int32")
    x = L.Embedding(vocabulary, width, embeddings_initializer=normal, name="tokens")(tokens)
    x = PositionEmbedding(length, normal, name="positions")(x)
    for i in range(depth):
        h = L.LayerNormalization(name=f"block_{i + 1}_ln_1")(x)
        h = L.MultiHeadAttention(heads, width // heads, kernel_initializer=normal,
                                 name=f"block_{i + 1}_attention")(h, h, use_causal_mask=True)
        x = L.Add(name=f"block_{i + 1}_add_1")([x, h])
        h = L.LayerNormalization(name=f"block_{i + 1}_ln_2")(x)
        h = L.Dense(4 * width, activation="gelu", kernel_initializer=normal,
                    name=f"block_{i + 1}_ffn_in")(h)
        h = L.Dense(width, kernel_initializer=normal, name=f"block_{i + 1}_ffn_out")(h)
        x = L.Add(name=f"block_{i + 1}_add_2")([x, h])
    x = L.LayerNormalization(name="final_ln")(x)
    return keras.Model(tokens, L.Dense(vocabulary, kernel_initializer=normal,
                                       name="head")(x), name="decoder")


def delayed_copy(samples=2000, length=16, vocabulary=16, delay=4, seed=0):
    """`(x, y)`: `x` random tokens 1..vocabulary-1, `y[:, t] = x[:, t - delay]`, 0 before."""
    check_sizes(samples=samples, length=length, delay=delay)
    if vocabulary < 3 or delay >= length:
        raise ValueError(f"`vocabulary` must be >= 3 and `delay` < `length`; received "
                         f"vocabulary={vocabulary}, delay={delay}, length={length}.")
    x = np.random.default_rng(seed).integers(1, vocabulary, size=(samples, length))
    y = np.zeros_like(x)
    y[:, delay:] = x[:, :-delay]
    return x.astype("int32"), y.astype("int32")
