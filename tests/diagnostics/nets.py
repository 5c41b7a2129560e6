"""Small networks whose right diagnosis is known."""
import keras
import numpy as np


def mlp(init, activation="relu", depth=30, width=128, inputs=128, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((inputs,))]
        + [keras.layers.Dense(width, activation=activation, kernel_initializer=init)
           for _ in range(depth)], name="mlp")


def batch(n=128, features=128, seed=0):
    return np.random.default_rng(seed).normal(size=(n, features)).astype("float32")
