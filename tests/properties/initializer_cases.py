"""What each built-in initializer takes and promises, written out here independently of
the package (fans, gains and laws are recomputed, not imported), for the property tests."""
import math

import hypothesis.strategies as st
import keras
import ml_dtypes
import numpy as np
import scipy.integrate
import scipy.stats

from keras_initkit import initializers as I

FLOATS = ("float16", "bfloat16", "float32", "float64")
SIGMAS = 6.0  # standard errors per moment check: a correct sampler fails one with p < 2e-9
MIN_N = 1000  # fewer draws than this: only the exact properties (bounds, structure) are checked
TRUNC = 0.87962566103423978  # std of N(0, 1) cut at +-2
# Kurtosis E[z^4] / E[z^2]^2 of each law, for the standard error of the sample variance.
KURTOSIS = {"normal": 3.0, "uniform": 1.8,
            "truncated_normal": 3.0 + float(scipy.stats.truncnorm(-2, 2).stats(moments="k"))}
NAMED = {  # class -> (scale, mode, law), as the papers define them
    I.GlorotUniform: (1.0, "fan_avg", "uniform"), I.GlorotNormal: (1.0, "fan_avg",
                                                                    "truncated_normal"),
    I.HeNormal: (2.0, "fan_in", "truncated_normal"), I.HeUniform: (2.0, "fan_in", "uniform"),
    I.LecunNormal: (1.0, "fan_in", "truncated_normal"), I.LecunUniform: (1.0, "fan_in",
                                                                         "uniform"),
}
# The classes valid_kwargs and check_promise are written for.
COVERED = {I.Zeros, I.Ones, I.Constant, I.RandomNormal, I.TruncatedNormal, I.RandomUniform,
           I.VarianceScaling, *NAMED, I.Orthogonal, I.Identity, I.DeltaOrthogonal,
           I.ConvolutionAware, I.ICNR, I.Sparse, I.ZerO, I.Pretrained}
MISSING_FILE = "no_such_initkit_file"  # + a suffix: a Pretrained path that never exists


# ---------------------------------------------------------------- numbers of a dtype

def np_dtype(dtype):
    return np.dtype(getattr(ml_dtypes, dtype, dtype))


def finfo(dtype):
    return ml_dtypes.finfo(np_dtype(dtype))


def to_numpy(x, shape):
    """A tensor as float64 NumPy. Through rank 1: Keras cannot convert a bfloat16 scalar."""
    if 0 in shape:  # (NumPy cannot even describe an empty array with an axis of 10**17)
        return np.zeros(0)
    flat = keras.ops.convert_to_numpy(keras.ops.reshape(x, (-1,)))
    return np.asarray(flat).astype(np.float64).reshape(shape)


def rounded(value, dtype):
    """`value` as `dtype` stores it (nearest), back in float64."""
    return np.asarray(value, dtype=np.float64).astype(np_dtype(dtype)).astype(np.float64)


def rounding(values, dtype):
    """The most that storing `values` in `dtype` moves one of them: half an ulp of the
    largest, plus the smallest normal number (a subnormal may be flushed to 0)."""
    if not values.size:
        return 0.0
    info = finfo(dtype)
    return float(info.eps) / 2 * float(np.max(np.abs(values))) + float(info.tiny)


# ---------------------------------------------------------------- fans and gains

def fans(shape, input_axes=None, output_axes=None):
    """Keras' fan counting, rewritten: rank 2 (in, out); conv (*k, in, out) times the field."""
    if input_axes is not None:
        return (math.prod(shape[a] for a in input_axes),
                math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    field = math.prod(shape[:-2])
    return shape[-2] * field, shape[-1] * field


def _second_moment(f):
    """E[f(z)^2], z ~ N(0, 1), by adaptive quadrature."""
    value, _ = scipy.integrate.quad(lambda z: f(z) ** 2 * scipy.stats.norm.pdf(z),
                                    -np.inf, np.inf, limit=200)
    return value


def expected_gain(activation, params):
    """torch's calculate_gain where it has one; 1 / sqrt(E[f(z)^2]) otherwise."""
    params = params or {}
    closed = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2), "selu": 0.75}
    if activation is None:
        return 1.0
    if activation in closed:
        return closed[activation]
    if activation == "leaky_relu":
        return math.sqrt(2 / (1 + params.get("negative_slope", 0.01) ** 2))
    alpha = params.get("alpha", 1.0)
    functions = {
        "elu": lambda z: z if z > 0 else alpha * math.expm1(z),
        "gelu": (lambda z: 0.5 * z * (1 + math.tanh(math.sqrt(2 / math.pi)
                                                     * (z + 0.044715 * z**3))))
        if params.get("approximate") else (lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2)))),
        "silu": lambda z: z * scipy.special.expit(z),
        "softplus": lambda z: np.logaddexp(0.0, z),
    }
    return 1 / math.sqrt(_second_moment(functions[activation]))


# ---------------------------------------------------------------- valid arguments

seeds = st.one_of(st.none(), st.integers(0, 2**63 - 1))
ACTIVATIONS = st.one_of(
    st.just((None, None)),
    st.tuples(st.sampled_from(["linear", "sigmoid", "tanh", "relu", "selu", "silu",
                               "softplus"]), st.none()),
    st.tuples(st.just("leaky_relu"), st.fixed_dictionaries(
        {"negative_slope": st.floats(0, 0.9)})),
    st.tuples(st.just("elu"), st.fixed_dictionaries({"alpha": st.floats(0.1, 2)})),
    st.tuples(st.just("gelu"), st.fixed_dictionaries({"approximate": st.booleans()})),
)


def positive(low, high):
    """Floats spread over orders of magnitude between low and high."""
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: 10.0**e)


@st.composite
def axes_for(draw, rank):
    """None, or an input/output split of some of the axes of a shape of this rank."""
    if rank < 2 or draw(st.booleans()):
        return {}
    axes = draw(st.permutations(range(rank)))
    cut = draw(st.integers(1, rank - 1))
    return {"input_axes": sorted(axes[:cut]), "output_axes": sorted(axes[cut:])}


@st.composite
def valid_kwargs(draw, cls, rank=2):
    """Arguments `cls` accepts (not always all of them: defaults get their turn)."""
    def maybe(**kwargs):  # each argument given or left to its default
        return {k: v for k, v in kwargs.items() if draw(st.booleans())}

    if cls in (I.Zeros, I.Ones):
        return {}
    if cls is I.Constant:
        # (not below float32's normal range: refused as a value float32 cannot hold)
        return maybe(value=draw(st.one_of(st.floats(-1e4, 1e4).filter(
            lambda v: v == 0 or abs(v) > 1e-30), st.integers(-100, 100))))
    if cls in (I.RandomNormal, I.TruncatedNormal):
        return maybe(mean=draw(st.floats(-100, 100)), stddev=draw(positive(1e-3, 100)),
                     seed=draw(seeds))
    if cls is I.RandomUniform:
        low = draw(st.floats(-100, 100))
        return {"minval": low, "maxval": low + draw(positive(1e-3, 100)), **maybe(
            seed=draw(seeds))}
    if cls is I.VarianceScaling:
        activation, params = draw(ACTIVATIONS)
        return {**maybe(scale=draw(positive(1e-3, 100)),
                        mode=draw(st.sampled_from(["fan_in", "fan_out", "fan_avg",
                                                   "fan_geo_avg"])),
                        distribution=draw(st.sampled_from(["normal", "truncated_normal",
                                                           "uniform", "untruncated_normal"])),
                        seed=draw(seeds)),
                **({"activation": activation} if activation else {}),
                **({"activation_params": params} if params else {}),
                **draw(axes_for(rank))}
    if cls in NAMED:
        return {**maybe(seed=draw(seeds)), **draw(axes_for(rank))}
    if cls is I.Orthogonal:
        return maybe(gain=draw(positive(0.1, 10)), seed=draw(seeds))
    if cls is I.DeltaOrthogonal:
        return maybe(gain=draw(positive(0.1, 10)), groups=draw(st.integers(1, 3)),
                     seed=draw(seeds))
    if cls is I.Identity:
        return maybe(gain=draw(positive(1e-3, 1e3)), groups=draw(st.integers(1, 3)))
    if cls is I.ZerO:
        return maybe(hadamard_scale=draw(st.sampled_from(["paper", "orthonormal"])))
    if cls is I.ConvolutionAware:
        return maybe(eps_std=draw(st.one_of(st.just(0.0), positive(1e-3, 10))),
                     seed=draw(seeds))
    if cls is I.ICNR:
        inner = draw(st.one_of(
            st.sampled_from(["kit_he_normal", "kit_glorot_uniform", "kit_zeros", "he_normal"]),
            st.builds(I.RandomNormal, stddev=positive(1e-2, 10), seed=seeds),
            st.builds(I.HeUniform, seed=seeds)))
        return maybe(scale=draw(st.integers(1, 3)), initializer=inner)
    if cls is I.Sparse:
        return maybe(sparsity=draw(st.floats(0, 0.99)), stddev=draw(positive(1e-3, 100)),
                     seed=draw(seeds))
    if cls is I.Pretrained:
        suffix = draw(st.sampled_from([".npz", ".keras", ".h5", ".weights.h5"]))
        return {"path": MISSING_FILE + suffix, "key": draw(st.text(min_size=1, max_size=8))}
    raise AssertionError(f"no valid arguments written for {cls.__name__}")


# ---------------------------------------------------------------- hostile arguments

# Finite numbers at the edges of the float formats: they pass a "finite and > 0" check and
# then overflow, underflow or lose their bits in a float32 or float16 computation.
EDGE_NUMBERS = [1.7976931348623157e308, -1e308, 1e300, 1e39, 65520.0, 1e6, 1e-6, 1e-8, 1e-40,
                1e-300, 5e-324, -0.0, 2**63, 2**64, 10**400, -(10**400)]
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from(EDGE_NUMBERS),
    st.sampled_from(EDGE_NUMBERS), st.floats(),  # NaN, +-inf, -0.0, subnormals
    st.text(max_size=6),
    st.sampled_from(["relu", "fan_in", "normal", "kit_he", "w.npz", "untruncated_normal"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3),
                                                             st.floats(), max_size=2),
    st.complex_numbers(max_magnitude=10), st.binary(max_size=3),
    st.floats(width=32).map(np.float32), st.integers(-5, 5).map(np.int64),
    st.just(np.array([1.0, 2.0])), st.just(object()),
)
# Numbers of every size, for the arguments that take numbers.
NUMBERS = st.one_of(st.sampled_from(EDGE_NUMBERS), st.floats(), st.integers(-(2**70), 2**70))
NUMERIC = {  # class -> its arguments that take a number
    I.Constant: ["value"], I.RandomNormal: ["mean", "stddev"],
    I.TruncatedNormal: ["mean", "stddev"], I.RandomUniform: ["minval", "maxval"],
    I.VarianceScaling: ["scale"], I.Orthogonal: ["gain"], I.DeltaOrthogonal: ["gain"],
    I.Identity: ["gain"], I.ConvolutionAware: ["eps_std"], I.ICNR: ["scale"],
    I.Sparse: ["sparsity", "stddev"],
}
HOSTILE_SHAPES = st.sampled_from([
    (2.5, 3), ("3",), ("a", 2), None, 5, (-1, 2), (True, 2), ((2,), 3), "ab",
    (2**40, 2**40, 2**40), (3, None),
])
OTHER_DTYPES = [None, "int32", "int8", "uint8", "int64", "bool", "complex64", "string",
                "float8_e4m3fn", "int4", 7]  # refused or handled as documented
DTYPES = st.one_of(st.sampled_from(FLOATS), st.sampled_from(FLOATS),
                   st.sampled_from(OTHER_DTYPES))
shapes = st.lists(st.integers(0, 5), max_size=5).map(tuple)  # rank 0 to 5, empty axes too


# ---------------------------------------------------------------- promises

def check_moments(x, mean, std, law, dtype):
    """Sample mean and variance within SIGMAS standard errors of the law's, plus what
    rounding to `dtype` can move them; skipped below MIN_N draws. Checked on the
    standardized draws z = (x - mean) / std, so that a mean of 1e308 or a std of 1e300
    cannot overflow the check itself."""
    n = x.size
    if n < MIN_N:
        return
    z = (x - mean) / std
    d = rounding(x, dtype) / std  # rounding, in units of std
    se_var = math.sqrt((KURTOSIS[law] - 1) / n)
    assert abs(z.mean()) <= SIGMAS / math.sqrt(n) + d, ("mean", z.mean(), d)
    assert abs(z.var() - 1) <= SIGMAS * se_var + 2 * d + d * d, ("variance", z.var(), d)


def check_law(x, mean, std, law, dtype):
    """Bounds (every draw, any size) and moments (large samples) of one law."""
    d = rounding(x, dtype)
    if law == "uniform":
        limit = math.sqrt(3) * std
        assert (x >= mean - limit * (1 + 1e-6) - d).all() and (
            x <= mean + limit * (1 + 1e-6) + d).all()
    if law == "truncated_normal":
        assert (np.abs(x - mean) <= 2 * std / TRUNC * (1 + 1e-5) + d).all()
    check_moments(x, mean, std, law, dtype)


def check_orthonormal(w, gain, dtype):
    """Columns (or rows, whichever are fewer) orthonormal times `gain`: the Gram matrix of
    w / gain is I within float32's working error and the rounding of each entry to `dtype`
    (relative eps / 2, or the smallest normal number near 0)."""
    u = w / gain
    gram = u.T @ u if u.shape[0] >= u.shape[1] else u @ u.T
    n = max(u.shape)
    tiny = min(float(finfo(dtype).tiny) / gain, 1.0)  # (entries below it say nothing)
    atol = float(finfo(dtype).eps) + 1e-4 + 2 * tiny * math.sqrt(n) + n * tiny**2
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=atol)


def check_promise(cls, config, shape, dtype, x):
    """What `cls(**config)(shape, dtype)` returned, `x` as float64 NumPy, keeps its promise."""
    if dtype in (*FLOATS, "float8_e4m3fn"):
        assert np.isfinite(x).all(), "non-finite values"
    if x.size == 0:
        return
    if cls in (I.Zeros, I.Ones, I.Constant):
        value = {I.Zeros: 0.0, I.Ones: 1.0}.get(cls, config.get("value", 0.0))
        assert (x == x.flat[0]).all(), "a constant that is not constant"
        if dtype in FLOATS or dtype == "float8_e4m3fn":  # nearest, or one ulp off if the
            # backend rounds through float32 first
            assert abs(x.flat[0] - value) <= float(finfo(dtype).eps) * abs(value) + float(
                finfo(dtype).tiny), (x.flat[0], value)
        else:  # integers and bools hold the value exactly (or refuse it)
            assert x.flat[0] == value, (x.flat[0], value)
    elif cls in (I.RandomNormal, I.TruncatedNormal):
        law = "normal" if cls is I.RandomNormal else "truncated_normal"
        check_law(x, config["mean"], config["stddev"], law, dtype)
    elif cls is I.RandomUniform:
        low, high = config["minval"], config["maxval"]
        check_law(x, (low + high) / 2, (high - low) / math.sqrt(12), "uniform", dtype)
    elif cls is I.VarianceScaling or cls in NAMED:
        if cls is I.VarianceScaling:
            scale, mode, law = config["scale"], config["mode"], config["distribution"]
            scale *= expected_gain(config["activation"], config["activation_params"]) ** 2
        else:
            scale, mode, law = NAMED[cls]
        fan_in, fan_out = fans(shape, config["input_axes"], config["output_axes"])
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
               "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]
        check_law(x, 0.0, math.sqrt(scale / max(1.0, fan)), law, dtype)
    elif cls is I.Orthogonal:
        check_orthonormal(x.reshape(-1, shape[-1]), config["gain"], dtype)
    elif cls in (I.Identity, I.DeltaOrthogonal, I.ZerO):
        centre = tuple(s // 2 for s in shape[:-2])
        tap = x[centre]
        groups = config.get("groups", 1)
        width = shape[-1] // groups
        for g in range(groups):  # output channels g * width ... read the g-th input group
            block = tap[:, g * width:(g + 1) * width]
            if cls is I.Identity:
                eye = np.eye(shape[-2], width, dtype=bool)
                assert (block[~eye] == 0).all() and (block[eye] == block[eye][0]).all()
                ulp = float(finfo(dtype).eps) if dtype in FLOATS else 0.0  # ints hold it
                assert abs(block[eye][0] - config["gain"]) <= ulp * config["gain"]
            elif cls is I.DeltaOrthogonal:
                check_orthonormal(block, config["gain"], dtype)
        if cls is I.ZerO:
            rows, cols = shape[-2:]
            if cols <= rows:
                expected = np.eye(rows, cols)
            else:  # Zhao et al. 2022, Algorithm 1, on scipy's Sylvester-Hadamard matrix
                m = math.ceil(math.log2(cols))
                c = 2.0 ** (-(m - 1) / 2 if config["hadamard_scale"] == "paper" else -m / 2)
                expected = c * scipy.linalg.hadamard(2**m)[:rows, :cols]
            np.testing.assert_array_equal(tap, rounded(expected, dtype) if dtype in FLOATS
                                          else expected)
        others = x.copy()
        others[centre] = 0
        assert not others.any(), "non-zero taps off the centre"
    elif cls is I.ConvolutionAware:
        target = 2.0 / fans(shape)[0]
        if x.size == 1:  # one entry has no spread: its size is the He std
            np.testing.assert_allclose(abs(x.item()), math.sqrt(target),
                                       rtol=float(finfo(dtype).eps) + 1e-6)
        else:  # the sample variance is exactly He's, up to rounding each entry
            rms, u = math.sqrt(np.mean(x**2)), float(finfo(dtype).eps) / 2
            assert abs(x.var() - target) <= 1e-4 * target + 2 * u * rms * (
                math.sqrt(target) + u * rms), (x.var(), target)
    elif cls is I.ICNR:
        blocks = config["scale"] ** (len(shape) - 2)
        width = shape[-1] // blocks
        sub = x[..., :width]
        for j in range(blocks):  # every output pixel of a block starts the same
            np.testing.assert_array_equal(x[..., j * width:(j + 1) * width], sub)
        inner = keras.initializers.deserialize(config["initializer"])
        if type(inner).__module__.startswith("keras_initkit"):
            check_promise(type(inner), inner.get_config(), shape[:-1] + (width,), dtype, sub)
    elif cls is I.Sparse:
        w = x.reshape(-1, shape[-1])
        zeros = math.ceil(config["sparsity"] * w.shape[0])
        counts = (w == 0).sum(axis=0)
        # A non-zero draw can still round to 0 in a half dtype, or flush below float32's range.
        exact = dtype in ("float32", "float64") and config["stddev"] > 1e-20
        assert (counts == zeros).all() if exact else (counts >= zeros).all(), (counts, zeros)
        check_law(w[w != 0], 0.0, config["stddev"], "normal", dtype)
    else:
        raise AssertionError(f"no promise written for {cls.__name__}")


def fit_shape(cls, config, shape):
    """`shape` changed as little as needed to be one that `cls` can fill."""
    shape = tuple(shape)
    rank = {I.ICNR: 3, I.DeltaOrthogonal: 3, I.Orthogonal: 2, I.Identity: 2,
            I.ConvolutionAware: 2, I.Sparse: 2, I.ZerO: 2}.get(cls, 0)
    shape = (1,) * (rank - len(shape)) + shape
    if cls in (I.Identity, I.DeltaOrthogonal, I.ZerO) and len(shape) >= 3:  # odd kernel sizes
        shape = tuple(s | 1 for s in shape[:-2]) + shape[-2:]
    if config.get("groups", 1) > 1:  # output channels: a multiple of the groups
        shape = shape[:-1] + (shape[-1] * config["groups"],)
    if cls is I.ICNR:  # output channels: sub-kernel channels times scale^d
        shape = shape[:-1] + (shape[-1] * config["scale"] ** (len(shape) - 2),)
    return shape
