"""The variance each scheme promises is the variance it samples, and the law has the right
shape."""
import math

import keras
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from stats import assert_mean, assert_variance, to_numpy

from keras_initkit import initializers as I
from keras_initkit.fans import compute_fans

SHAPE = (384, 512)  # 196,608 draws per check
CONV = (3, 3, 64, 96)  # 165,888 draws
KS_P = 1e-3  # fixed seeds: a pass is deterministic; a wrong law gives p ~ 0 at this n
TRUNC = 0.87962566103423978


def fan(shape, mode):
    fan_in, fan_out = compute_fans(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
            "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]


NAMED = [  # class, variance numerator, mode, law
    (I.GlorotUniform, 1.0, "fan_avg", "uniform"),
    (I.GlorotNormal, 1.0, "fan_avg", "truncated_normal"),
    (I.HeNormal, 2.0, "fan_in", "truncated_normal"),
    (I.HeUniform, 2.0, "fan_in", "uniform"),
    (I.LecunNormal, 1.0, "fan_in", "truncated_normal"),
    (I.LecunUniform, 1.0, "fan_in", "uniform"),
]


def law(kind, std, mean=0.0):
    if kind == "uniform":
        limit = math.sqrt(3) * std
        return scipy.stats.uniform(loc=mean - limit, scale=2 * limit)
    if kind == "normal":
        return scipy.stats.norm(loc=mean, scale=std)
    return scipy.stats.truncnorm(-2, 2, loc=mean, scale=std / TRUNC)


def check_law(x, dist, mean, std):
    x = np.ravel(x)
    assert_mean(x, mean)
    assert_variance(x, std**2)
    assert scipy.stats.kstest(x, dist.cdf).pvalue > KS_P


@pytest.mark.parametrize("cls,scale,mode,kind", NAMED, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("shape", [SHAPE, CONV], ids=["dense", "conv"])
def test_named_schemes_sample_the_promised_variance(cls, scale, mode, kind, shape):
    x = to_numpy(cls(seed=1)(shape))
    std = math.sqrt(scale / fan(shape, mode))
    check_law(x, law(kind, std), 0.0, std)
    if kind == "truncated_normal":
        assert np.abs(x).max() <= 2 * std / TRUNC * (1 + 1e-6)


@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg", "fan_geo_avg"])
def test_variance_scaling_every_mode_and_distribution(mode, distribution):
    init = I.VarianceScaling(scale=3.0, mode=mode, distribution=distribution, seed=2)
    std = math.sqrt(3.0 / fan(CONV, mode))
    check_law(to_numpy(init(CONV)), law(distribution, std), 0.0, std)


def test_variance_scaling_activation_gain_sets_the_scale():
    init = I.VarianceScaling(mode="fan_in", distribution="normal", activation="leaky_relu",
                             activation_params={"negative_slope": 0.2}, seed=3)
    std = math.sqrt(2 / (1 + 0.2**2) / SHAPE[0])
    check_law(to_numpy(init(SHAPE)), law("normal", std), 0.0, std)


def test_input_and_output_axes_override_the_fans():
    shape = (32, 8, 64)  # an einsum kernel: input axis 0, output axes 1 and 2
    init = I.HeUniform(seed=4, input_axes=[0], output_axes=[1, 2])
    assert_variance(to_numpy(init(shape)), 2.0 / 32)


@pytest.mark.parametrize("cls,kind,kwargs", [
    (I.RandomNormal, "normal", {"mean": 0.5, "stddev": 0.3}),
    (I.TruncatedNormal, "truncated_normal", {"mean": -1.0, "stddev": 0.2}),
])
def test_plain_normal_schemes(cls, kind, kwargs):
    x = to_numpy(cls(seed=5, **kwargs)(SHAPE))
    check_law(x, law(kind, kwargs["stddev"], kwargs["mean"]), kwargs["mean"], kwargs["stddev"])


def test_random_uniform_bounds_and_law():
    x = np.ravel(to_numpy(I.RandomUniform(-0.2, 0.6, seed=6)(SHAPE)))
    assert x.min() >= -0.2 and x.max() <= 0.6
    check_law(x, scipy.stats.uniform(-0.2, 0.8), 0.2, 0.8 / math.sqrt(12))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_every_float_dtype(dtype):
    for init in (I.HeNormal(seed=0), I.GlorotUniform(seed=0), I.Orthogonal(seed=0),
                 I.RandomNormal(seed=0), I.Sparse(seed=0), I.ConvolutionAware(seed=0),
                 I.TruncatedNormal(seed=0), I.DeltaOrthogonal(seed=0), I.Identity(),
                 I.ICNR(scale=2), I.RandomUniform(seed=0), I.VarianceScaling(seed=0)):
        x = init((3, 3, 8, 16), dtype=dtype)
        assert keras.backend.standardize_dtype(x.dtype) == dtype, (init, x.dtype)
        values = to_numpy(x)
        assert np.isfinite(values).all() and values.std() > 0


def test_zero_sized_axis_gives_an_empty_tensor():
    for init in (I.HeNormal(), I.Orthogonal(), I.Identity(), I.Sparse(), I.Zeros(),
                 I.ConvolutionAware(), I.GlorotUniform()):
        for shape in [(0, 5), (3, 3, 0, 4)]:
            x = init(shape)
            assert tuple(x.shape) == shape


@pytest.mark.parametrize("shape,gain", [((256, 64), 1.0), ((64, 256), 2.0), ((3, 3, 32, 64), 0.5),
                                        ((128, 128), 1.3), ((2048, 128), 1.0), ((128, 2048), 0.7),
                                        ((3, 3, 256, 64), 1.0), ((1536, 1536), 1.3),
                                        ((1024, 3072), 0.8)])
def test_orthogonal_is_orthogonal_times_gain(shape, gain):
    w = to_numpy(I.Orthogonal(gain=gain, seed=7)(shape, dtype="float32")).reshape(-1, shape[-1])
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=2e-5 * gain**2)


@pytest.mark.parametrize("shape", [(2048, 128), (1024, 1024)])
def test_panel_q_is_the_sign_fixed_householder_q(shape):
    # Large matrices are built panel by panel (CholeskyQR2 when tall, block Gram-Schmidt
    # when square); the result must be the Q of QR with diag(R) > 0, times the gain.
    from keras_initkit.initializers.orthogonal import _haar_panels

    a = np.random.default_rng(0).normal(size=shape).astype("float32")
    widths = []

    def draw(index, width):
        assert index == len(widths)
        start = sum(widths)
        widths.append(width)
        return keras.ops.convert_to_tensor(a[:, start:start + width])

    panels = _haar_panels(draw, *shape, 1.5)
    assert sum(widths) == shape[1] and (len(widths) > 2) == (shape[0] == shape[1])
    q, r = np.linalg.qr(a.astype("float64"))
    expected = 1.5 * q * np.sign(np.diag(r))
    np.testing.assert_allclose(np.concatenate([to_numpy(p) for p in panels], axis=1), expected,
                               atol=1e-5)


def test_orthogonal_is_haar_distributed():
    # Under the Haar measure on O(n), sqrt(n) * W[0, 0] tends to N(0, 1); without
    # the sign correction from diag(R) the law is visibly skewed.
    n, draws = 64, 2000
    init = I.Orthogonal(seed=8)
    x = np.array([to_numpy(init((n, n)))[0, 0] for _ in range(draws)]) * math.sqrt(n)
    assert_mean(x, 0.0)
    assert scipy.stats.kstest(x, scipy.stats.beta(
        (n - 1) / 2, (n - 1) / 2, loc=-math.sqrt(n), scale=2 * math.sqrt(n)).cdf).pvalue > KS_P


def test_identity_matrix_and_dirac_kernel():
    np.testing.assert_array_equal(to_numpy(I.Identity(gain=2.0)((3, 5))), 2.0 * np.eye(3, 5))
    k = to_numpy(I.Identity()((3, 5, 4, 6)))
    expected = np.zeros((3, 5, 4, 6))
    expected[1, 2] = np.eye(4, 6)
    np.testing.assert_array_equal(k, expected)


def test_identity_conv_passes_its_input_through():

    x = np.random.default_rng(0).normal(size=(2, 9, 9, 4)).astype("float32")
    conv = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer="kit_identity")
    np.testing.assert_allclose(to_numpy(conv(x)), x, atol=1e-6)


def test_delta_orthogonal_has_an_orthogonal_centre_and_zeros_elsewhere():
    k = to_numpy(I.DeltaOrthogonal(gain=1.5, seed=9)((3, 3, 16, 32)))
    centre = k[1, 1]
    np.testing.assert_allclose(centre @ centre.T, 2.25 * np.eye(16), atol=1e-5)
    k[1, 1] = 0
    assert not k.any()


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_identity_is_torch_dirac_and_passes_a_grouped_conv_through(groups):
    torch = pytest.importorskip("torch")
    shape = (3, 3, 8 // groups, 8)  # Keras' grouped kernel: (*k, in / groups, out)
    reference = torch.zeros(8, 8 // groups, 3, 3)
    torch.nn.init.dirac_(reference, groups=groups)
    k = to_numpy(I.Identity(groups=groups)(shape))
    np.testing.assert_array_equal(k, reference.permute(2, 3, 1, 0).numpy())
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 8)).astype("float32")
    conv = keras.layers.Conv2D(8, 3, padding="same", groups=groups,
                               kernel_initializer=I.Identity(groups=groups))
    np.testing.assert_allclose(to_numpy(conv(x)), x, atol=1e-6)


def test_grouped_delta_orthogonal_is_orthogonal_in_each_group():
    k = to_numpy(I.DeltaOrthogonal(gain=2.0, groups=4, seed=1)((3, 3, 8, 16)))
    centre = k[1, 1]
    for g in range(4):
        block = centre[:, 4 * g:4 * (g + 1)]
        np.testing.assert_allclose(block.T @ block, 4.0 * np.eye(4), atol=1e-5)
    assert not np.allclose(centre[:, :4], centre[:, 4:8])  # each group draws its own
    with pytest.raises(ValueError, match="groups=3.*divisible"):
        I.DeltaOrthogonal(groups=3)((3, 3, 8, 16))
    with pytest.raises(ValueError, match="groups"):
        I.Identity(groups=0)


@pytest.mark.parametrize("rows,cols", [(16, 16), (32, 8), (8, 32), (5, 12), (3, 3)])
def test_zero_init_is_the_papers_algorithm(rows, cols):
    w = to_numpy(I.ZerO()((rows, cols)))
    if cols <= rows:
        np.testing.assert_array_equal(w, np.eye(rows, cols))
    else:  # Zhao et al. 2022, Algorithm 1, in the paper's (out, in) layout, transposed
        m = math.ceil(math.log2(cols))
        paper = np.eye(cols, 2**m) @ scipy.linalg.hadamard(2**m) @ np.eye(2**m, rows)
        np.testing.assert_allclose(w, (2.0 ** (-(m - 1) / 2) * paper).T, rtol=1e-6)
        if cols == 2**m:  # whole Hadamard rows are orthogonal: W W^T = c^2 2^m I = 2 I
            np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(rows), rtol=1e-5)
    conv = to_numpy(I.ZerO(hadamard_scale="orthonormal")((3, 3, rows, cols)))
    centre = conv[1, 1].copy()
    conv[1, 1] = 0
    assert not conv.any()
    scale = 1.0 if cols <= rows else 2.0 ** -0.5  # the notebook's 2^(-m/2)
    np.testing.assert_allclose(centre, scale * w, rtol=1e-6)


def test_convolution_aware_is_built_from_real_fourier_coefficients():
    # Real coefficients through irfftn give circularly even kernels: k[i, j] = k[-i, -j].
    shape = (3, 3, 4, 8)
    k = to_numpy(I.ConvolutionAware(eps_std=0.0, seed=10)(shape))
    np.testing.assert_allclose(k.var(), 2.0 / compute_fans(shape)[0], rtol=1e-5)
    flipped = np.roll(k[::-1, ::-1], 1, axis=(0, 1))
    np.testing.assert_allclose(k, flipped, atol=1e-6)
    noisy = to_numpy(I.ConvolutionAware(eps_std=0.05, seed=10)(shape))
    assert not np.allclose(noisy, np.roll(noisy[::-1, ::-1], 1, axis=(0, 1)), atol=1e-3)


@pytest.mark.parametrize("shape", [(5, 8, 16), (3, 3, 3, 4, 6), (1, 1, 8, 8), (32, 16)])
def test_convolution_aware_other_ranks_have_exact_he_variance(shape):
    k = to_numpy(I.ConvolutionAware(seed=11)(shape))
    assert k.shape == shape
    np.testing.assert_allclose(k.var(), 2.0 / compute_fans(shape)[0], rtol=1e-4)


def test_icnr_starts_as_nearest_neighbour_upsampling():

    kernel = to_numpy(I.ICNR(scale=2, initializer=I.HeNormal(seed=12))((3, 3, 5, 12)))
    np.testing.assert_array_equal(kernel[..., :3], kernel[..., 3:6])
    np.testing.assert_array_equal(kernel[..., :3], kernel[..., 9:])
    conv = keras.layers.Conv2D(12, 3, padding="same", kernel_initializer=I.ICNR(scale=2))
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 5)).astype("float32")
    import tensorflow as tf

    up = to_numpy(tf.nn.depth_to_space(conv(x), 2))  # (1, 12, 12, 3)
    blocks = up.reshape(1, 6, 2, 6, 2, 3)
    np.testing.assert_allclose(blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape),
                               atol=1e-6)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9])
def test_sparse_zeros_per_column_are_exact(sparsity):
    shape = (200, 300)
    w = to_numpy(I.Sparse(sparsity=sparsity, stddev=0.5, seed=13)(shape))
    zeros = (w == 0).sum(axis=0)
    assert (zeros == math.ceil(sparsity * 200)).all()
    nonzero = w[w != 0]
    check_law(nonzero, scipy.stats.norm(0, 0.5), 0.0, 0.5)


def test_constants():
    np.testing.assert_array_equal(to_numpy(I.Zeros()((2, 3))), np.zeros((2, 3)))
    np.testing.assert_array_equal(to_numpy(I.Ones()((2, 3))), np.ones((2, 3)))
    np.testing.assert_array_equal(to_numpy(I.Constant(-0.25)((4,))), np.full(4, -0.25))
    assert keras.backend.standardize_dtype(I.Constant(3)((2,), dtype="int32").dtype) == "int32"
    # Whole numbers beyond float32's and float64's exact range stay exact in integer dtypes.
    for value, dtype in ((2**24 + 1, "int32"), (2**53 + 1, "int64")):
        filled = keras.ops.convert_to_numpy(I.Constant(value)((2,), dtype=dtype))
        assert filled.tolist() == [value, value], dtype
