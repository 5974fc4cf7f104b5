"""A restricted unpickler for dataset files: a pickle can rebuild data, never run code.

A pickle names the callables it wants called (its ``GLOBAL`` / ``STACK_GLOBAL`` opcodes); plain
``pickle.load`` imports and calls whatever it names, so a file whose ``__reduce__`` says
``os.system`` runs a command. :class:`SafeUnpickler` resolves only the names in :data:`ALLOWED`:
the builtin containers and numbers, and the few numpy functions that rebuild arrays, dtypes and
scalars. Anything else is refused *before* it is imported or called, with a
:class:`~fewshot_cam.errors.UserError` naming the file and the refused ``module.name``.

What the real formats hold (learn2learn's mini-ImageNet cache pickles, Ren et al.'s tiered-ImageNet
``png-pkl`` files, both often written by Python 2): dicts, lists, str or bytes, ints, and numpy
arrays. Python 2 names (``__builtin__.unicode``, ``long``) map to their Python 3 types, and Python 3
pickles of ``bytes`` at protocol <= 2 call ``_codecs.encode(text, 'latin1')``, which is allowed only
with that codec.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import io
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from fewshot_cam.errors import UserError


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol <= 2; only latin1 is accepted."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1", errors)


def _numpy_allowed() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2; pickles written by numpy 1 name numpy.core.*, which maps here too
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric

    found = {}
    for package in ("numpy._core", "numpy.core"):
        found[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        found[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


def _sized(cls: type) -> Any:
    """``bytes`` / ``bytearray`` as a pickle may call them: from data, never ``bytes(10**12)`` zeros."""
    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{cls.__name__}(<int>) is not allowed in a data file")
        return cls(*args)

    return build


_BUILTINS = {name: getattr(builtins, name) for name in ("dict", "list", "tuple", "set", "frozenset", "str",
                                                         "int", "float", "bool", "complex")}
_BUILTINS.update(bytes=_sized(bytes), bytearray=_sized(bytearray))
ALLOWED: dict[tuple[str, str], Any] = {
    **{(module, name): obj for module in ("builtins", "__builtin__") for name, obj in _BUILTINS.items()},
    ("__builtin__", "unicode"): str,
    ("__builtin__", "long"): int,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    **_numpy_allowed(),
}
"""(module, name) -> the object a pickle may use under that name; nothing else resolves."""


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside :data:`ALLOWED`; ``.name`` is ``module.name``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name}")
        self.name = name


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED`; no persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:  # named as Python 3 calls it (__builtin__ -> builtins) in the message
            raise RefusedGlobal(f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a data file")


# What a damaged pickle can raise while loading.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                 IndexError, KeyError, MemoryError, OverflowError, RecursionError, UnicodeDecodeError)


def safe_loads(data: bytes, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (raises pickle's errors and :class:`RefusedGlobal`)."""
    return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()


def safe_load(path: str | Path, encoding: str = "latin1") -> Any:
    """Unpickle the file at ``path`` safely; UserError naming the file (and any refused global).

    ``encoding`` decodes Python 2 ``str``: latin1 (the default) keeps numpy arrays' raw bytes intact;
    ``"bytes"`` returns them as bytes.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding=encoding).load()
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except IsADirectoryError:
        raise UserError("expected a pickle file, found a folder", path) from None
    except RefusedGlobal as err:
        raise UserError(f"refused to load: the pickle calls {err.name}, which a data file may not use "
                        "(only containers, numbers, strings, bytes and numpy arrays are rebuilt)", path) from None
    except PICKLE_ERRORS as err:
        raise UserError(f"corrupt or truncated pickle ({type(err).__name__}: {err})", path) from None
    except OSError as err:
        raise UserError(f"cannot read pickle ({err.strerror or err})", path) from None
