"""The alias table: `kit_*` names for every scheme, and user-defined schemes.

An alias is registered in Keras' global custom objects, which is where
`keras.initializers.get("kit_he")` and `Dense(..., kernel_initializer="kit_he")`
look a plain string up.
"""
import collections
import difflib
import inspect

import keras

from . import initializers as inits

InitializerInfo = collections.namedtuple("InitializerInfo", ["alias", "cls", "formula"])

BUILTIN_ALIASES = {
    "kit_zeros": inits.Zeros,
    "kit_ones": inits.Ones,
    "kit_constant": inits.Constant,
    "kit_random_normal": inits.RandomNormal,
    "kit_random_uniform": inits.RandomUniform,
    "kit_truncated_normal": inits.TruncatedNormal,
    "kit_glorot_uniform": inits.GlorotUniform,
    "kit_glorot": inits.GlorotUniform,
    "kit_xavier_uniform": inits.GlorotUniform,
    "kit_glorot_normal": inits.GlorotNormal,
    "kit_xavier": inits.GlorotNormal,
    "kit_xavier_normal": inits.GlorotNormal,
    "kit_he_normal": inits.HeNormal,
    "kit_he": inits.HeNormal,
    "kit_kaiming_normal": inits.HeNormal,
    "kit_he_uniform": inits.HeUniform,
    "kit_kaiming_uniform": inits.HeUniform,
    "kit_lecun_normal": inits.LecunNormal,
    "kit_lecun_uniform": inits.LecunUniform,
    "kit_variance_scaling": inits.VarianceScaling,
    "kit_orthogonal": inits.Orthogonal,
    "kit_identity": inits.Identity,
    "kit_delta_orthogonal": inits.DeltaOrthogonal,
    "kit_convolution_aware": inits.ConvolutionAware,
    "kit_icnr": inits.ICNR,
    "kit_sparse": inits.Sparse,
    "kit_zero_init": inits.ZerO,
    "kit_pretrained": inits.Pretrained,
}

_aliases = {}  # alias -> class, built-in and user-defined


def _add(alias, cls):
    _aliases[alias] = cls
    keras.saving.get_custom_objects()[alias] = cls


def _keras_names():
    return {name for name in dir(keras.initializers) if not name.startswith("_")}


def _function_initializer(alias, fn):
    """Wraps `fn(shape, dtype=None)` in a serializable Initializer class."""

    def __call__(self, shape, dtype=None):
        return fn(shape, dtype=dtype)

    doc = inspect.getdoc(fn) or f"User-defined initializer {alias!r}."
    cls = type(f"FunctionInitializer_{fn.__name__}", (keras.initializers.Initializer,), {
        "__call__": __call__,
        "__doc__": doc,
        "formula": doc.splitlines()[0],
        "function": staticmethod(fn),
        "__module__": getattr(fn, "__module__", __name__),
    })
    return keras.saving.register_keras_serializable(package="keras_initkit", name=alias)(cls)


def register_initializer(alias):
    """Registers a user-defined scheme under `alias`, usable wherever Keras takes a name.

    Decorates a `keras.initializers.Initializer` subclass, or a plain function
    `fn(shape, dtype=None)` that returns a tensor. Either becomes usable as
    `kernel_initializer=alias`, through `keras_initkit.get(alias)`, and is
    serializable. As with any Keras custom object, run the registration before
    loading a model saved with it. Registering an alias again replaces the
    earlier user-defined entry (convenient in notebooks); the built-in `kit_*`
    aliases and Keras' own names cannot be taken.

    Args:
        alias: The name to register, a non-empty string.

    Returns:
        A decorator that registers its argument and returns a class: the class
        itself, or for a function, a generated Initializer class wrapping it.

    Example:
    >>> @keras_initkit.register_initializer("kit_half")
    ... def half(shape, dtype=None):
    ...     '''Every entry 0.5.'''
    ...     return keras.ops.full(shape, 0.5, dtype=dtype)
    >>> keras.layers.Dense(4, kernel_initializer="kit_half")
    """
    if not isinstance(alias, str) or not alias:
        raise TypeError(f"`alias` must be a non-empty string; received alias={alias!r}.")
    if alias in BUILTIN_ALIASES:
        raise ValueError(f"alias={alias!r} is a built-in keras_initkit alias; choose another name.")
    if alias in _keras_names():
        raise ValueError(f"alias={alias!r} is one of Keras' own initializer names; choose another.")

    def decorator(obj):
        if inspect.isclass(obj):
            if not issubclass(obj, keras.initializers.Initializer):
                raise TypeError(
                    f"register_initializer({alias!r}) takes a keras.initializers.Initializer "
                    f"subclass or a function fn(shape, dtype=None); received class {obj.__name__}."
                )
            if obj not in keras.saving.get_custom_objects().values() and \
                    keras.saving.get_registered_name(obj) == obj.__name__:
                keras.saving.register_keras_serializable(package="keras_initkit")(obj)
            cls = obj
        elif callable(obj) and not isinstance(obj, keras.initializers.Initializer):
            cls = _function_initializer(alias, obj)
        else:
            raise TypeError(
                f"register_initializer({alias!r}) takes an Initializer subclass or a function "
                f"fn(shape, dtype=None); received {obj!r}. To register an instance, register "
                "its class."
            )
        _add(alias, cls)
        return obj if inspect.isclass(obj) else cls

    return decorator


def get(identifier):
    """Resolves an initializer identifier: a `kit_*` alias, a Keras name, a config or an instance.

    Args:
        identifier: An alias string, a Keras initializer name, a serialized
            config dict, an Initializer instance, a callable, or None.

    Returns:
        An initializer instance (the same object for an instance or callable),
        or None for None.

    Example:
    >>> keras_initkit.get("kit_he")
    HeNormal(seed=None, input_axes=None, output_axes=None)
    """
    if identifier is None or isinstance(identifier, keras.initializers.Initializer):
        return identifier
    if isinstance(identifier, str):
        if identifier in _aliases:
            cls = _aliases[identifier]
            try:
                return cls()
            except TypeError as error:  # "kit_pretrained" needs a path and a key
                raise TypeError(
                    f"The initializer {identifier!r} cannot be built without arguments "
                    f"({error}); give an instance of {cls.__name__}, or a config "
                    f"{{'class_name': {identifier!r}, 'config': {{...}}}}.") from None
        try:
            return keras.initializers.get(identifier)
        except ValueError:
            close = [f"kit_{identifier}"] if f"kit_{identifier}" in _aliases else \
                difflib.get_close_matches(identifier, list(_aliases), n=3, cutoff=0.75)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"Unknown initializer {identifier!r}.{hint} keras_initkit.list_initializers() "
                "lists every alias; Keras' own names work too."
            ) from None
    if isinstance(identifier, dict):
        return keras.initializers.get(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(
        f"Cannot interpret an initializer from {identifier!r} of type "
        f"{type(identifier).__name__}; give an alias string, a config dict or an Initializer."
    )


def list_initializers():
    """Every registered alias with its class and its one-line formula.

    Returns:
        A list of `InitializerInfo(alias, cls, formula)`, sorted by alias.

    Example:
    >>> [i.alias for i in keras_initkit.list_initializers()][:3]
    ['kit_constant', 'kit_convolution_aware', 'kit_delta_orthogonal']
    """
    return [InitializerInfo(alias, cls, _formula(cls)) for alias, cls in sorted(_aliases.items())]


def _formula(cls):
    """The class's `formula`, else the first line of its docstring."""
    return getattr(cls, "formula", "") or (inspect.getdoc(cls) or "").partition("\n")[0]


for _alias, _cls in BUILTIN_ALIASES.items():
    _add(_alias, _cls)
