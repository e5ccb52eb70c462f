"""Read pickled array trees from untrusted files without running any code from them.

A pickle names the functions and classes that rebuild its objects, and plain ``pickle.load`` calls
whatever it names: a file from the internet could run ``os.system``. :func:`load_array_tree` reads
pickles through an allow-list instead. It accepts exactly what a checkpoint of the authors' JAX code
(or any pickle of numpy arrays in dicts, lists and tuples) needs:

- numpy arrays and scalars (numpy 1 and 2 module names), rebuilt as numpy arrays; object arrays are
  refused, since their elements would be arbitrary objects;
- JAX arrays, rebuilt as the numpy arrays they hold (no JAX install needed);
- flax ``FrozenDict`` as a plain ``dict``;
- optax optimizer states (``ScaleByAdamState``, ``EmptyState``, ...) as :class:`InertState`, a tuple
  that remembers the name of the class it stands for and runs nothing.

Every other global is refused with :class:`UnsafePickleError`, which names it, before anything it
names is called: the check runs when the pickle *names* a global, and calling comes later.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from typing import Any, BinaryIO

import numpy as np

from .errors import UserError

__all__ = ["InertState", "UnsafePickleError", "load_array_tree"]


class UnsafePickleError(UserError):
    """The pickle names a global outside the allow-list (nothing from it has been called)."""


class InertState(tuple):
    """Stand-in for an optimizer-state named tuple: its fields as a tuple, plus ``state_name``."""

    state_name = "state"

    def __new__(cls, *fields: Any) -> InertState:  # rebuilt like a named tuple: one argument per field
        return super().__new__(cls, fields)

    def __repr__(self) -> str:
        return f"{self.state_name}{tuple.__repr__(self)}"


def _inert(name: str) -> type[InertState]:
    return type(name, (InertState,), {"state_name": name, "__module__": __name__})


def _jax_array(fun, args, array_state, aval_state=None) -> np.ndarray:
    """What ``jax.Array.__reduce__`` rebuilds, as the numpy array it holds.

    JAX pickles an array as (numpy's reconstructor, its arguments, the numpy array state); ``fun``
    has already passed the allow-list, since the unpickler resolved it as a global.
    """
    array = fun(*args)
    array.__setstate__(array_state)
    return _checked(array)


def _checked(array: Any) -> Any:
    if isinstance(array, np.ndarray) and array.dtype.hasobject:
        raise UnsafePickleError("the pickle holds an array of Python objects; only numeric arrays are read")
    return array


def _refuse_object_arrays(tree: Any) -> None:
    """Walk dicts, lists and tuples; an array of Python objects is refused (it could hold anything)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        else:
            _checked(node)


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if dtype.hasobject:
        raise UnsafePickleError("the pickle holds a numpy object scalar; only numeric values are read")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _numpy_frombuffer(buffer: Any, dtype: np.dtype, shape: tuple[int, ...], order: str = "C") -> np.ndarray:
    """Pickle protocol 5's array rebuilder: raw bytes of a numeric dtype, shaped."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise UnsafePickleError("the pickle holds an array of Python objects; only numeric arrays are read")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array reconstructor
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = reconstruct
        found[(module, "scalar")] = _numpy_scalar
    for module in ("numpy", "numpy.core.numeric", "numpy._core.numeric"):
        found[(module, "dtype")] = np.dtype
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        found[(module, "_frombuffer")] = _numpy_frombuffer
    return found


# Optimizer states of optax (module names of several versions); each becomes an inert tuple.
_OPTAX_STATES = (
    "EmptyState",
    "ScaleByAdamState",
    "ScaleByScheduleState",
    "ScaleByLearningRateState",
    "ScaleState",
    "TraceState",
    "MaskedState",
    "MultiStepsState",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "ApplyIfFiniteState",
)
_OPTAX_MODULES = (
    "optax._src.base",
    "optax._src.transform",
    "optax._src.wrappers",
    "optax._src.combine",
    "optax._src.alias",
    "optax.transforms._masking",
    "optax.transforms._combining",
    "optax.transforms._adding",
    "optax.schedules._inject",
)

ALLOWED: dict[tuple[str, str], Any] = {
    **_numpy_globals(),
    ("jax._src.array", "_reconstruct_array"): _jax_array,
    ("flax.core.frozen_dict", "FrozenDict"): dict,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): lambda text, encoding="latin1": str(text).encode(encoding),  # protocol-2 bytes
    **{(module, name): _inert(name) for module in _OPTAX_MODULES for name in _OPTAX_STATES},
}


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: the file asks to call code outside the arrays and containers "
                "a checkpoint needs (nothing from it was run)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a pickle with persistent references (not a checkpoint)")


def load_array_tree(source: str | os.PathLike | BinaryIO | bytes) -> Any:
    """The object tree of a pickle of arrays, read through the allow-list (see the module docstring).

    ``source`` is a path, an open binary file or the bytes themselves. A path is read as a stream, so
    memory holds the arrays once, not the file's bytes besides them. Raises
    :class:`UnsafePickleError` for a global outside the allow-list and :class:`UserError` for a file
    that is not a readable pickle.
    """
    if isinstance(source, (bytes, bytearray)):
        return _load(io.BytesIO(source), "the data")
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return _load(f, os.fspath(source))
    return _load(source, getattr(source, "name", "the file"))


def _load(stream: BinaryIO, where: str) -> Any:
    try:
        tree = _AllowListUnpickler(stream).load()
        _refuse_object_arrays(tree)
        return tree
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{where}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{where} is not a readable pickle of arrays: {exc}") from None
