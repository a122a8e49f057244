"""Files written and read back safely.

- :func:`atomic_path`: atomic writes; a reader sees the old file or the whole new one, never half of one.
- :func:`save_plain` / :func:`load_plain`: madlib's plain-data format (below) for loop checkpoints and sweep
  results: numpy arrays, tensors and JSON, with a checksum; reading it cannot run code (no pickle).
- :func:`checksum`: the SHA-256 of a payload of tensors, arrays and numbers (the network caches store it
  beside their payload and check it on load).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, move it onto ``path``.

    The finished file is flushed to disk and gets the usual permissions (mkstemp makes it 0600);
    if the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- plain data on disk: a format that cannot run code ---------------------------------------------------
#
# A file of madlib's plain-data format (PLAIN_FORMAT) is an ``.npz`` archive (``numpy.savez``, read back with
# ``numpy.load(allow_pickle=False)``) holding
#
# - ``__tree__``: UTF-8 JSON of the stored object, as a uint8 array;
# - ``a0``, ``a1``, ...: every numpy array and torch tensor in it (tensors whose dtype numpy lacks, such as
#   bfloat16, as their raw bytes);
# - ``__checksum__``: the SHA-256 of the tree and of every array's name, dtype, shape and bytes.
#
# JSON's own values (None, bools, numbers with NaN / Infinity, strings, lists, dicts with string keys) stand
# for themselves; everything else is a dict whose "$" names it:
#
#   {"$": "tuple" | "set" | "frozenset" | "size", "items": [...]}     tuple, set, frozenset, torch.Size
#   {"$": "dict" | "odict", "items": [[key, value], ...]}             dict with other keys (or a "$" key),
#                                                                      OrderedDict
#   {"$": "ndarray" | "npscalar", "key": "a3", "ref": n}              numpy array / scalar (no object dtype)
#   {"$": "tensor", "key": "a4", "dtype", "shape", "device", "requires_grad", "parameter", "raw", "ref": n}
#   {"$": "torch.dtype" | "torch.device", "name": "float32" | "cuda:0"}
#   {"$": "dataclass", "class": "madlib.x:Name", "ref": n, "fields": {...}}   a dataclass defined in madlib
#   {"$": "module", "class": "madlib.x:Name" | "torch.nn.x:Name", "ref": n, "state": {...}}
#                                                                      an nn.Module: its attributes (__dict__)
#   {"$": "function", "name": "torch.nn.functional.relu"}             an activation function of torch (the
#                                                                      names in _FUNCTION_NAMES, none other)
#   {"$": "ref", "ref": n}                                             the n-th object above again (shared)
#
# Reading never imports anything but madlib's own modules and torch.nn's, and builds only dataclasses defined
# in madlib and nn.Module subclasses of madlib and torch.nn, from their stored attributes (as pickle would: the
# class's __new__, then its attributes, through nn.Module.__setstate__ for a module); no function the file names
# is ever called, and the only functions it can name are torch's activations.
# Anything else (a function, a lambda, a foreign class, an object array) is refused when writing, with its place
# named (PlainDataError).

PLAIN_FORMAT = "madlib-plain-v1"


class StorageWarning(UserWarning):
    """A stored file (checkpoint, sweep result, cached network) was damaged, stale or in an old format; it is
    not used, and what it held is computed again."""


class PlainDataError(TypeError):
    """A value that madlib's plain-data format cannot hold (it names where in the value it sits)."""


class DamagedFileError(ValueError):
    """A file that is not a whole, intact file of madlib's plain-data format (the message names it)."""


# Activation functions a stored network may hold as an attribute (madlib's EnsembleNet does): by name, no others.
_FUNCTION_NAMES = tuple(f"torch.{n}" for n in ("relu", "tanh", "sigmoid")) + tuple(
    f"torch.nn.functional.{n}" for n in ("relu", "leaky_relu", "tanh", "sigmoid", "silu", "gelu", "elu", "softplus",
                                         "mish", "hardtanh"))


def _functions() -> dict:
    import torch  # noqa: F401 - torch.nn.functional is reached from it

    found = {}
    for name in _FUNCTION_NAMES:
        module, _, attr = name.rpartition(".")
        found[name] = getattr(importlib.import_module(module), attr)
    return found


def _torch():
    return sys.modules.get("torch")


def _is_tensor(obj) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def _tensor_bytes(t) -> np.ndarray:
    """A tensor's elements as a numpy array (its own dtype where numpy has it, else uint8 raw bytes)."""
    import torch

    t = t.detach().cpu().contiguous()
    try:
        return t.numpy()
    except TypeError:  # bfloat16, float8, complex32...: numpy has no such dtype
        return t.reshape(-1).view(torch.uint8).numpy()


def checksum(obj) -> str:
    """SHA-256 of a payload: nested dicts, lists and tuples of tensors, numpy arrays, numbers, strings and None.

    Tensors and arrays contribute their dtype, shape and bytes; dict entries are taken in sorted key order.
    """
    h = hashlib.sha256()
    _feed(h, obj, "payload")
    return h.hexdigest()


def _feed(h, obj, where: str) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, Mapping):
        h.update(f"{type(obj).__name__}{{{len(obj)};".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, key, where)
            _feed(h, obj[key], f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)};".encode())
        for i, value in enumerate(obj):
            _feed(h, value, f"{where}[{i}]")
    elif isinstance(obj, (np.ndarray, np.generic)) or _is_tensor(obj):
        kind = "tensor" if _is_tensor(obj) else "ndarray"
        array = _tensor_bytes(obj) if kind == "tensor" else np.ascontiguousarray(obj)
        if array.dtype.hasobject:
            raise PlainDataError(f"{where}: an object array has no checksum")
        dtype = str(obj.dtype)
        h.update(f"{kind}:{dtype}:{tuple(obj.shape)};".encode())
        h.update(array.tobytes())
    else:
        raise PlainDataError(f"{where}: a {type(obj).__name__} has no checksum (only tensors, arrays, numbers, "
                             "strings, None, and dicts, lists and tuples of these)")


def _class_name(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed_module(name: str, kind: str) -> bool:
    if name == "madlib" or name.startswith("madlib."):
        return True
    return kind == "module" and (name == "torch.nn" or name.startswith("torch.nn."))


def _resolve(name: str, kind: str):
    """The class a file names, if it is one madlib restores (else DamagedFileError); imports madlib / torch.nn only."""
    module, _, qualname = str(name).partition(":")
    if not qualname or not _allowed_module(module, kind):
        raise DamagedFileError(f"names class {name!r}, which madlib does not restore (only dataclasses of madlib "
                               "and nn.Modules of madlib and torch.nn)")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise DamagedFileError(f"names class {name!r}, which does not exist here ({err})") from None
    ok = isinstance(obj, type) and _class_name(obj) == name
    if ok and kind == "dataclass":
        ok = dataclasses.is_dataclass(obj)
    elif ok:
        torch = importlib.import_module("torch")
        ok = issubclass(obj, torch.nn.Module)
    if not ok:
        raise DamagedFileError(f"names {name!r} as a {kind}, which it is not")
    return obj


class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.refs: dict[int, int] = {}  # id(obj) -> ref number (arrays, tensors, dataclasses, modules)
        self.keep: list = []  # the objects behind refs, alive while encoding

    def _ref(self, obj) -> tuple[int, bool]:
        n = self.refs.get(id(obj))
        if n is not None:
            return n, True
        n = self.refs[id(obj)] = len(self.refs)
        self.keep.append(obj)
        return n, False

    def _array(self, array: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = array
        return key

    def encode(self, obj, where: str):
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if type(obj) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) is dict:
            if all(type(k) is str for k in obj) and "$" not in obj:
                return {k: self.encode(v, f"{where}[{k!r}]") for k, v in obj.items()}
            return {"$": "dict", "items": self._items(obj, where)}
        if type(obj) is OrderedDict:
            return {"$": "odict", "items": self._items(obj, where)}
        if type(obj) in (tuple, set, frozenset):
            return {"$": type(obj).__name__, "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if type(obj) is np.ndarray or isinstance(obj, np.generic):
            if obj.dtype.hasobject:
                raise PlainDataError(f"{where}: a numpy array of Python objects cannot be stored without pickle")
            n, seen = self._ref(obj)
            if seen:
                return {"$": "ref", "ref": n}
            kind = "ndarray" if isinstance(obj, np.ndarray) else "npscalar"
            return {"$": kind, "key": self._array(np.asarray(obj)), "ref": n}
        torch = _torch()
        if torch is not None:
            encoded = self._torch(obj, where, torch)
            if encoded is not None:
                return encoded
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            state = vars(obj) if hasattr(obj, "__dict__") else {f.name: getattr(obj, f.name)
                                                                 for f in dataclasses.fields(obj)}
            return self._object(obj, where, "dataclass", "fields", state, "one of madlib's dataclasses")
        what = getattr(obj, "__qualname__", None) if callable(obj) else None
        raise PlainDataError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__}"
                             f"{f' ({what})' if what else ''} cannot be stored without pickle; madlib stores numbers, "
                             "strings, None, lists, tuples, sets, dicts, numpy arrays, tensors, madlib's dataclasses, "
                             "nn.Modules of madlib and torch.nn and torch's activation functions")

    def _object(self, obj, where, kind: str, key: str, state: dict, allowed: str):
        """An object of an allowed class (a madlib dataclass, an nn.Module of madlib or torch.nn) as its class name and
        encoded attributes; one seen before as a reference to it."""
        cls = type(obj)
        if not _allowed_module(cls.__module__, kind):
            raise PlainDataError(f"{where}: {_class_name(cls)} is not {allowed}; only those are stored without pickle")
        n, seen = self._ref(obj)
        if seen:
            return {"$": "ref", "ref": n}
        return {"$": kind, "class": _class_name(cls), "ref": n,
                key: {k: self.encode(v, f"{where}.{k}") for k, v in state.items()}}

    def _items(self, obj, where):
        return [[self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")] for k, v in obj.items()]

    def _torch(self, obj, where, torch):
        if type(obj) is torch.Size:
            return {"$": "size", "items": list(obj)}
        if type(obj) is torch.dtype:
            return {"$": "torch.dtype", "name": str(obj).removeprefix("torch.")}
        if type(obj) is torch.device:
            return {"$": "torch.device", "name": str(obj)}
        if type(obj) in (torch.Tensor, torch.nn.Parameter):
            if obj.layout != torch.strided or obj.is_quantized or obj.device.type == "meta":
                raise PlainDataError(f"{where}: only dense tensors are stored ({obj.layout}, {obj.device})")
            n, seen = self._ref(obj)
            if seen:
                return {"$": "ref", "ref": n}
            array = _tensor_bytes(obj)
            return {"$": "tensor", "key": self._array(array), "ref": n, "dtype": str(obj.dtype).removeprefix("torch."),
                    "shape": list(obj.shape), "device": str(obj.device), "requires_grad": bool(obj.requires_grad),
                    "parameter": type(obj) is torch.nn.Parameter,
                    "raw": array.dtype == np.uint8 and obj.dtype != torch.uint8}
        if callable(obj) and not isinstance(obj, (type, torch.nn.Module)):
            name = next((n for n, f in _functions().items() if f is obj), None)
            if name is not None:
                return {"$": "function", "name": name}
            return None
        if isinstance(obj, torch.nn.Module):
            return self._object(obj, where, "module", "state", vars(obj), "an nn.Module of madlib or torch.nn")
        return None


class _Decoder:
    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = arrays
        self.objects: dict[int, Any] = {}

    def _register(self, node, obj):
        self.objects[int(node["ref"])] = obj
        return obj

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            raise DamagedFileError(f"holds an unexpected JSON value {type(node).__name__}")
        tag = node.get("$")
        if tag is None:
            return {k: self.decode(v) for k, v in node.items()}
        if tag in ("tuple", "set", "frozenset"):
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](self.decode(v) for v in node["items"])
        if tag in ("dict", "odict"):
            pairs = [(self.decode(k), self.decode(v)) for k, v in node["items"]]
            return dict(pairs) if tag == "dict" else OrderedDict(pairs)
        if tag == "ref":
            return self.objects[int(node["ref"])]
        if tag in ("ndarray", "npscalar"):
            array = self.arrays[node["key"]]
            return self._register(node, array if tag == "ndarray" else array[()])
        if tag == "dataclass":
            cls = _resolve(node["class"], "dataclass")
            obj = self._register(node, cls.__new__(cls))
            for k, v in node["fields"].items():
                object.__setattr__(obj, k, self.decode(v))
            return obj
        import torch

        if tag == "size":
            return torch.Size(int(v) for v in node["items"])
        if tag == "torch.dtype":
            return _torch_dtype(node["name"])
        if tag == "torch.device":
            return torch.device(str(node["name"]))
        if tag == "tensor":
            return self._register(node, self._tensor(node, torch))
        if tag == "function":
            if node["name"] not in _FUNCTION_NAMES:
                raise DamagedFileError(f"names function {node['name']!r}, which madlib does not restore")
            return _functions()[node["name"]]
        if tag == "module":
            cls = _resolve(node["class"], "module")
            obj = self._register(node, cls.__new__(cls))
            obj.__setstate__({k: self.decode(v) for k, v in node["state"].items()})
            return obj
        raise DamagedFileError(f"holds an unknown entry {tag!r}")

    def _tensor(self, node, torch):
        array = self.arrays[node["key"]]
        dtype = _torch_dtype(node["dtype"])
        t = torch.from_numpy(array if array.flags.writeable else array.copy())
        if node["raw"]:
            t = t.view(dtype)
        t = t.reshape([int(s) for s in node["shape"]])
        if t.dtype != dtype:
            raise DamagedFileError(f"holds a tensor stored as {t.dtype} for {dtype}")
        t = t.to(torch.device(node["device"]))
        if node["parameter"]:
            return torch.nn.Parameter(t, requires_grad=bool(node["requires_grad"]))
        return t.requires_grad_(bool(node["requires_grad"]))


def _torch_dtype(name: str):
    import torch

    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise DamagedFileError(f"names an unknown tensor dtype {name!r}")
    return dtype


def _digest(tree: bytes, arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(tree)
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_plain(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` to ``path`` in madlib's plain-data format (see above), atomically (:func:`atomic_path`).

    Raises PlainDataError, naming the place, for a value the format cannot hold; ``path`` is then untouched.
    """
    encoder = _Encoder()
    tree = json.dumps({"format": PLAIN_FORMAT, "value": encoder.encode(obj, "value")}).encode()
    arrays = encoder.arrays
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, __tree__=np.frombuffer(tree, dtype=np.uint8),
                 __checksum__=np.frombuffer(_digest(tree, arrays).encode(), dtype=np.uint8), **arrays)


def load_plain(path: str | os.PathLike):
    """The object stored by :func:`save_plain` at ``path``; never unpickles.

    Raises DamagedFileError naming the file and what is wrong with it (truncated, damaged, checksum mismatch,
    another format such as a pickle, a class madlib does not restore); FileNotFoundError when it is absent.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if not {"__tree__", "__checksum__"} <= names:
                raise DamagedFileError(f"{path} is not a madlib plain-data file (no __tree__ / __checksum__)")
            tree = archive["__tree__"].tobytes()
            stored = archive["__checksum__"].tobytes().decode("ascii")
            arrays = {name: archive[name] for name in names - {"__tree__", "__checksum__"}}
    except FileNotFoundError:
        raise
    except DamagedFileError:
        raise
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways; reading runs no code
        raise DamagedFileError(f"{path} cannot be read ({_what_is_wrong(path, err)})") from None
    if _digest(tree, arrays) != stored:
        raise DamagedFileError(f"{path} is damaged (checksum mismatch)")
    try:
        data = json.loads(tree)
        if not isinstance(data, dict) or data.get("format") != PLAIN_FORMAT:
            raise DamagedFileError(f"is in format {data.get('format') if isinstance(data, dict) else None!r}, "
                                   f"not {PLAIN_FORMAT!r}")
        return _Decoder(arrays).decode(data["value"])
    except DamagedFileError as err:
        raise DamagedFileError(f"{path} {err}") from None
    except Exception as err:  # noqa: BLE001 - a tree that does not decode is a damaged file
        raise DamagedFileError(f"{path} does not decode ({type(err).__name__}: {err})") from None


def _what_is_wrong(path: Path, err: Exception) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        head = b""
    if head[:1] == b"\x80":
        return "it is a pickle, which madlib does not load: unpickling a file can run code"
    return f"{type(err).__name__}: {err}"
