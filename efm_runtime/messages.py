"""The one place nodes get message and service types from.

Why this exists: a node is written once and runs on two middlewares. Under ``ros2`` the types are the
classes rosidl generated for rclpy. Under ``embedded`` (no ROS installed) they are built from the very
same ``.msg``/``.srv`` files with ``rosbags``, whose typestore also ships the standard ROS 2 Jazzy types
(std_msgs, sensor_msgs, geometry_msgs, ...) and serialises to the same CDR bytes as rclpy. Asking for
types here, by name, is what keeps the two worlds carrying identical fields and bytes:

    Task = get_message("efm_msgs/msg/Task")
    task = Task(robot="robot_a", instruction="push the red block", max_steps=200)
    ResetDone = get_service("efm_msgs/srv/ResetDone")

Embedded classes behave like rclpy's: every field is an optional keyword with a default (0, 0.0, False,
"", nested messages default-constructed, lists for sequences of strings or messages) and values are
checked when set, with the same strictness as rclpy (an ``int`` is not a ``float32``, numpy scalars are not
Python numbers), so code that runs embedded does not trip rclpy's assertions on the robot. Errors are
``MessageError`` naming type and field, e.g. ``efm_msgs/msg/Task.max_steps: expected uint32, got str 'ten'``.

Differences from rclpy that node code may see:
  * numeric sequences and arrays are 1-D numpy arrays here (rclpy: ``array.array`` for sequences, numpy
    for fixed arrays; rclpy rejects numpy arrays in sequence fields). To fill a sequence portably pass a
    list (``arr.tolist()``) or, for ``uint8[]`` such as ``Image.data``, ``bytes`` (``img.tobytes()``).
  * ``byte`` is a signed 8-bit integer and ``char`` an unsigned one, as rosbags serialises them (rclpy:
    ``bytes`` of length 1 and ``str``), and ``bool[]`` is a numpy bool array (rclpy: a list).
  * default values written in ``.msg`` files are not applied (rosbags drops them); efm_msgs declares none.
"""
from __future__ import annotations

import array
import functools
import importlib
import math
import os
import re
import reprlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backend import ROS2, middleware
from .errors import MessageError, did_you_mean

PACKAGE = "efm_msgs"
MSGS_DIR_ENV = "EFM_MSGS_DIR"

_NAME, _ARRAY, _SEQUENCE = 2, 3, 4  # rosbags.interfaces.Nodetype values in field descriptors

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
    "byte": (-(2**7), 2**7 - 1), "char": (0, 2**8 - 1),  # as rosbags packs them ('b' and 'B')
}
_FLOAT32_MAX = 3.4028234663852886e38
_FLOATS = ("float32", "float64")
_STRINGS = ("string", "wstring")
_DTYPES = {
    "bool": np.dtype(np.bool_), "byte": np.dtype(np.int8), "char": np.dtype(np.uint8),
    "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8), "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16), "int32": np.dtype(np.int32), "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64), "uint64": np.dtype(np.uint64),
    "float32": np.dtype(np.float32), "float64": np.dtype(np.float64),
}
_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------

def get_message(type_name: str) -> type:
    """The message class for ``"pkg/msg/Name"`` (or ``"pkg/Name"``) on the active middleware.

    Service halves are messages too: ``"pkg/srv/Name_Request"`` and ``"pkg/srv/Name_Response"``.
    """
    pkg, kind, name = _split_type_name(type_name, "msg")
    if kind == "srv" and not name.endswith(("_Request", "_Response")):
        raise MessageError(f"{type_name!r} is a service type: use get_service({type_name!r})")
    if middleware() == ROS2:
        return _ros2_message(pkg, kind, name)
    return _embedded_message(f"{pkg}/{kind}/{name}")


def get_service(type_name: str) -> Any:
    """The service type for ``"pkg/srv/Name"``: it has ``.Request`` and ``.Response`` message classes."""
    pkg, kind, name = _split_type_name(type_name, "srv")
    if kind != "srv":
        raise MessageError(f"{type_name!r} is not a service type: write 'pkg/srv/Name', e.g. 'efm_msgs/srv/ResetDone'")
    if middleware() == ROS2:
        return _ros2_interface(pkg, kind, name)
    return _embedded_service(f"{pkg}/srv/{name}")


def message_type_name(msg_or_class: Any) -> str:
    """``"pkg/msg/Name"`` of a message (or service) instance or class, from either middleware."""
    cls = msg_or_class if isinstance(msg_or_class, type) else type(msg_or_class)
    for attr in ("__msgtype__", "__srvtype__"):  # embedded (rosbags) classes carry their name
        name = getattr(cls, attr, None)
        if isinstance(name, str):
            return name
    parts = (cls.__module__ or "").split(".")  # rclpy: efm_msgs.msg._task.Task -> efm_msgs/msg/Task
    if len(parts) >= 2 and parts[1] in ("msg", "srv", "action"):
        return f"{parts[0]}/{parts[1]}/{cls.__name__}"
    raise MessageError(f"{_short.repr(msg_or_class)} is not a ROS message or message class")


def validate_message(msg: Any, expected_type: str | None = None) -> None:
    """Check ``msg`` against its definition (recursively) and, if given, that it is ``expected_type``.

    Raises ``MessageError`` naming the type and the field path, e.g.
    ``sensor_msgs/msg/Image.header.stamp.sec: expected int32, got str '3'``. Cheap: numpy arrays are
    checked by dtype and shape, not element by element.
    """
    if isinstance(msg, type):
        raise MessageError(f"got the class {message_type_name(msg)}, not a message: call it to make one")
    type_name = message_type_name(msg)
    if expected_type is not None and type_name != _normalize_type_name(expected_type):
        raise MessageError(f"expected a {expected_type} message, got {type_name}")
    if middleware() == ROS2:
        if getattr(type(msg), "__msgtype__", None):
            raise MessageError(f"{type_name}: an embedded message class used on the ros2 middleware; "
                               "get message classes through efm_runtime.get_message")
        return  # rclpy checked every value when it was set
    _validate_fields(msg, type_name, type_name)


def serialize(msg: Any) -> bytes:
    """CDR bytes of ``msg`` (little endian, 4-byte encapsulation header), as ROS 2 puts them on the wire."""
    if middleware() == ROS2:
        from rclpy.serialization import serialize_message

        return serialize_message(msg)
    validate_message(msg)
    return bytes(embedded_typestore().serialize_cdr(msg, message_type_name(msg), little_endian=True))


def deserialize(data: bytes, type_name: str) -> Any:
    """The message of type ``type_name`` encoded in the CDR bytes ``data``."""
    cls = get_message(type_name)
    if middleware() == ROS2:
        from rclpy.serialization import deserialize_message

        return deserialize_message(data, cls)
    from rosbags.serde import SerdeError

    try:  # a private, writable copy: arrays of the message must not alias the caller's buffer
        return embedded_typestore().deserialize_cdr(memoryview(bytearray(data)), cls.__msgtype__)
    except SerdeError as exc:
        raise MessageError(f"could not deserialize {cls.__msgtype__}: {exc}") from exc


_store_lock = threading.Lock()
_store = None


def embedded_typestore():
    """The rosbags typestore of the embedded middleware: ROS 2 Jazzy types plus efm_msgs.

    Its classes are the rclpy-like ones ``get_message`` returns, so deserialising (also from a bag)
    gives messages that validate and publish like any other.
    """
    global _store
    if _store is not None:
        return _store
    with _store_lock:
        if _store is None:
            _store = _build_typestore()
        return _store


def find_msgs_dir() -> Path:
    """The ``efm_msgs`` folder holding ``msg/`` and ``srv/``: source tree, pip install or ament prefix."""
    explicit = os.environ.get(MSGS_DIR_ENV, "").strip()
    if explicit:
        if not (Path(explicit) / "msg").is_dir():
            raise MessageError(f"{MSGS_DIR_ENV}={explicit} has no msg/ folder; point it at the efm_msgs folder")
        return Path(explicit)
    candidates = [Path(__file__).resolve().parents[1] / PACKAGE, Path(sys.prefix) / "share/efm" / PACKAGE]
    candidates += [Path(p) / "share" / PACKAGE for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for candidate in candidates:
        if (candidate / "msg").is_dir():
            return candidate
    looked = "\n  ".join(str(c) for c in candidates)
    raise MessageError(f"cannot find the efm_msgs message definitions (msg/*.msg); looked in:\n  {looked}\n"
                       f"set {MSGS_DIR_ENV} to the efm_msgs folder of the efm source tree")


# --------------------------------------------------------------------------------------------------
# Type names
# --------------------------------------------------------------------------------------------------

def _split_type_name(type_name: str, default_kind: str) -> tuple[str, str, str]:
    parts = type_name.strip().split("/") if isinstance(type_name, str) else []
    if len(parts) == 2:
        parts.insert(1, default_kind)
    if len(parts) != 3 or not all(parts):
        raise MessageError(f"{type_name!r} is not a type name; write 'pkg/{default_kind}/Name', "
                           f"e.g. {'std_msgs/msg/String' if default_kind == 'msg' else 'efm_msgs/srv/ResetDone'!r}")
    return parts[0], parts[1], parts[2]


def _normalize_type_name(type_name: str) -> str:
    return "/".join(_split_type_name(type_name, "msg"))


# --------------------------------------------------------------------------------------------------
# ros2: the rclpy generated classes
# --------------------------------------------------------------------------------------------------

def _ros2_message(pkg: str, kind: str, name: str) -> type:
    half = name.rsplit("_", 1)
    if kind == "srv" and len(half) == 2 and half[1] in ("Request", "Response"):
        return getattr(_ros2_interface(pkg, kind, half[0]), half[1])
    return _ros2_interface(pkg, kind, name)


def _ros2_interface(pkg: str, kind: str, name: str) -> Any:
    type_name = f"{pkg}/{kind}/{name}"
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name not in (pkg, f"{pkg}.{kind}"):
            raise
        raise MessageError(f"{type_name}: the ROS 2 package {pkg!r} is not installed or its workspace is not "
                           f"sourced (e.g. `source install/setup.bash` after `colcon build`)") from exc
    if not hasattr(module, name):
        known = [n for n in dir(module) if n[:1].isupper()]
        raise MessageError(f"unknown type {type_name}{did_you_mean(name, known)}")
    return getattr(module, name)


# --------------------------------------------------------------------------------------------------
# embedded: rosbags typestore classes, made rclpy-like
# --------------------------------------------------------------------------------------------------

def _build_typestore():
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(_parse_interfaces(find_msgs_dir(), store.fielddefs))
    for type_name in list(store.types):
        store.types[type_name] = _rclpy_like_class(store.types[type_name])
    return store


def _parse_interfaces(directory: Path, known: dict) -> dict:
    """Typesdict of every msg/*.msg and srv/*.srv (as ``pkg/srv/Name_Request`` and ``_Response``)."""
    types: dict = {}
    for path in sorted((directory / "msg").glob("*.msg")):
        types.update(_parse_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{path.stem}", path))
    for path in sorted((directory / "srv").glob("*.srv")) if (directory / "srv").is_dir() else []:
        halves = re.split(r"^---[ \t]*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
        if len(halves) != 2:
            raise MessageError(f"{path}: a service needs exactly one '---' line between request and response")
        for suffix, text in zip(("Request", "Response"), halves):
            # Parsed under pkg/msg/ so that a bare type name refers to pkg/msg/<Type>, as in ROS 2.
            (parsed,) = _parse_msg(text, f"{PACKAGE}/msg/{path.stem}_{suffix}", path).values()
            types[f"{PACKAGE}/srv/{path.stem}_{suffix}"] = parsed
    _check_references(types, known)
    return types


def _parse_msg(text: str, type_name: str, path: Path) -> dict:
    from rosbags.typesys import TypesysError, get_types_from_msg

    try:
        return get_types_from_msg(text, type_name)
    except TypesysError as exc:
        raise MessageError(f"{path}: not a valid message definition: {exc}") from exc


def _check_references(types: dict, known: dict) -> None:
    for type_name, (_, fields) in types.items():
        for field_name, desc in fields:
            inner = desc[1][0] if desc[0] in (_ARRAY, _SEQUENCE) else desc
            ref = inner[1] if inner[0] == _NAME else None
            if ref is not None and ref not in types and ref not in known:
                raise MessageError(f"{type_name}.{field_name}: unknown type {ref}"
                                   f"{did_you_mean(ref, [*types, *known])}")


def _embedded_message(type_name: str) -> type:
    store = embedded_typestore()
    cls = store.types.get(type_name)
    if cls is None:
        raise MessageError(f"unknown message type {type_name}{did_you_mean(type_name, store.types)}")
    if not cls.__dict__.get("_efm_rclpy_like"):  # registered later by someone else: wrap it now
        cls = store.types[type_name] = _rclpy_like_class(cls)
        store.cache.pop(type_name, None)  # a cached (de)serialiser would still build the plain class
    return cls


@functools.cache
def _embedded_service(type_name: str) -> type:
    store = embedded_typestore()
    if f"{type_name}_Request" not in store.types:
        services = sorted({t.rsplit("_", 1)[0] for t in store.types if "/srv/" in t})
        raise MessageError(f"unknown service type {type_name}{did_you_mean(type_name, services)}")
    name = type_name.rsplit("/", 1)[1]
    return type(name, (), {
        "__doc__": f"{type_name} on the embedded middleware: .Request and .Response message classes.",
        "__module__": __name__, "__qualname__": name, "__srvtype__": type_name,
        "Request": _embedded_message(f"{type_name}_Request"),
        "Response": _embedded_message(f"{type_name}_Response"),
    })


@dataclass(frozen=True)
class _Field:
    """One field of a message definition, in the terms the checks need."""

    name: str         # ROS field name
    attr: str         # Python attribute (a keyword such as 'from' gets a trailing underscore)
    element: str      # base type ('uint32', 'string', ...) or message type ('std_msgs/msg/Header')
    is_message: bool
    count: str        # '' scalar, 'array' (fixed length), 'sequence' (bounded when size > 0)
    size: int         # length of an array, bound of a sequence, 0 for an unbounded sequence
    str_size: int     # bound of a string, 0 = unbounded

    @property
    def ros_type(self) -> str:
        base = self.element + (f"<={self.str_size}" if self.str_size else "")
        if self.count == "array":
            return f"{base}[{self.size}]"
        if self.count == "sequence":
            return f"{base}[{f'<={self.size}' if self.size else ''}]"
        return base


@functools.cache
def _fields(type_name: str) -> tuple[_Field, ...]:
    from rosbags.typesys.base import normalize_fieldname

    result = []
    for name, desc in embedded_typestore().fielddefs[type_name][1]:
        count, size, inner = "", 0, desc
        if desc[0] in (_ARRAY, _SEQUENCE):
            count, size, inner = ("array" if desc[0] == _ARRAY else "sequence"), desc[1][1], desc[1][0]
        is_message = inner[0] == _NAME
        element, str_size = (inner[1], 0) if is_message else inner[1]
        result.append(_Field(name, normalize_fieldname(name), element, is_message, count, size, str_size))
    return tuple(result)


@functools.cache
def _fields_by_attr(type_name: str) -> dict[str, _Field]:
    return {f.attr: f for f in _fields(type_name)}


def _rclpy_like_class(base: type) -> type:
    """A subclass of the rosbags dataclass ``base`` that is constructed and checked like rclpy's class."""
    type_name = base.__msgtype__
    name = type_name.rsplit("/", 1)[1]
    return type(name, (base,), {
        "__doc__": f"{type_name} (embedded middleware); every field is an optional keyword, as with rclpy.",
        "__module__": __name__, "__qualname__": name, "_efm_rclpy_like": True,
        "__init__": _message_init, "__setattr__": _message_setattr, "__eq__": _message_eq,
        "__hash__": None, "__repr__": _message_repr, "__reduce__": _message_reduce,
        "get_fields_and_field_types": classmethod(_fields_and_field_types),
    })


def _message_init(self, *args: Any, **kwargs: Any) -> None:
    type_name = type(self).__msgtype__
    fields = _fields(type_name)
    if len(args) > len(fields):
        raise MessageError(f"{type_name} takes at most {len(fields)} values, got {len(args)}; "
                           "prefer keywords, e.g. Task(robot='robot_a')")
    for field, value in zip(fields, args):  # positional values: rosbags' deserialiser builds messages so
        if field.attr in kwargs:
            raise MessageError(f"{type_name}.{field.name} given twice")
        kwargs[field.attr] = value
    by_attr = _fields_by_attr(type_name)
    unknown = [key for key in kwargs if key not in by_attr]
    if unknown:
        raise MessageError(f"{type_name} has no field {unknown[0]!r}{did_you_mean(unknown[0], by_attr)}")
    for field in fields:
        if field.attr in kwargs:
            value = _coerce(field, kwargs[field.attr], f"{type_name}.{field.name}")
        else:
            value = _default(field)
        object.__setattr__(self, field.attr, value)


def _message_setattr(self, attr: str, value: Any) -> None:
    type_name = type(self).__msgtype__
    field = _fields_by_attr(type_name).get(attr)
    if field is None:
        raise MessageError(f"{type_name} has no field {attr!r}{did_you_mean(attr, _fields_by_attr(type_name))}")
    object.__setattr__(self, attr, _coerce(field, value, f"{type_name}.{field.name}"))


def _message_eq(self, other: Any) -> bool:
    if getattr(other, "__msgtype__", None) != type(self).__msgtype__:
        return NotImplemented if not hasattr(other, "__msgtype__") else False
    return all(_values_equal(getattr(self, f.attr), getattr(other, f.attr)) for f in _fields(self.__msgtype__))


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


def _message_repr(self) -> str:
    pkg, kind, name = type(self).__msgtype__.split("/")
    values = ", ".join(f"{f.attr}={getattr(self, f.attr, '?')!r}" for f in _fields(self.__msgtype__))
    return f"{pkg}.{kind}.{name}({values})"


def _message_reduce(self):
    return _rebuild, (type(self).__msgtype__, tuple(getattr(self, f.attr) for f in _fields(self.__msgtype__)))


def _rebuild(type_name: str, values: tuple) -> Any:
    """Unpickle / copy an embedded message."""
    return _embedded_message(type_name)(*values)


_RCLPY_BASE_NAMES = {"float32": "float", "float64": "double", "byte": "octet"}


def _fields_and_field_types(cls) -> dict[str, str]:
    """Field name -> type, as rclpy's ``get_fields_and_field_types()`` spells it (e.g. 'sequence<float>')."""
    result = {}
    for f in _fields(cls.__msgtype__):
        if f.is_message:
            pkg, _, name = f.element.split("/")
            element = f"{pkg}/{name}"
        else:
            element = _RCLPY_BASE_NAMES.get(f.element, f.element) + (f"<{f.str_size}>" if f.str_size else "")
        if f.count == "array":
            element = f"{element}[{f.size}]"
        elif f.count == "sequence":
            element = f"sequence<{element}{f', {f.size}' if f.size else ''}>"
        result[f.name] = element
    return result


# ---- defaults and checks --------------------------------------------------------------------------

def _default(field: _Field) -> Any:
    if field.count == "":
        if field.is_message:
            return _embedded_message(field.element)()
        return _scalar_default(field.element)
    length = field.size if field.count == "array" else 0
    if field.is_message:
        return [_embedded_message(field.element)() for _ in range(length)]
    if field.element in _STRINGS:
        return [""] * length
    return np.zeros(length, dtype=_DTYPES[field.element])


def _scalar_default(element: str) -> Any:
    if element in _STRINGS:
        return ""
    if element == "bool":
        return False
    return 0.0 if element in _FLOATS else 0


def _coerce(field: _Field, value: Any, where: str) -> Any:
    """The value to store in ``field`` (lists of numbers become numpy arrays), or MessageError."""
    if field.count == "":
        if field.is_message:
            _check_message_type(field.element, value, where)
        else:
            _check_scalar(field, value, where)
        return value
    if field.is_message or field.element in _STRINGS:
        if not isinstance(value, (list, tuple)):
            raise MessageError(f"{where}: expected {field.ros_type} (a list), got {_describe(value)}")
        items = list(value)
        _check_length(field, len(items), where)
        for i, item in enumerate(items):
            if field.is_message:
                _check_message_type(field.element, item, f"{where}[{i}]")
            else:
                _check_scalar(field, item, f"{where}[{i}]")
        return items
    return _as_array(field, value, where)


def _as_array(field: _Field, value: Any, where: str) -> np.ndarray:
    dtype = _DTYPES.get(field.element)
    if dtype is None:
        raise MessageError(f"{where}: {field.ros_type} is not supported by the embedded middleware")
    if isinstance(value, np.ndarray):  # kept, not copied: an image is not copied on its way to publish()
        _check_array(field, value, where)
        return value if value.flags.c_contiguous else np.ascontiguousarray(value)
    if isinstance(value, (bytes, bytearray, memoryview)) and dtype.itemsize == 1 and dtype.kind in "ui":
        array_ = np.frombuffer(value, dtype=dtype).copy()
    elif isinstance(value, array.array) and value.typecode != "u" and np.dtype(value.typecode) == dtype:
        array_ = np.array(value, dtype=dtype)
    elif isinstance(value, (list, tuple, array.array)):
        items = value.tolist() if isinstance(value, array.array) else value
        for i, item in enumerate(items):
            _check_scalar(field, item, f"{where}[{i}]")
        array_ = np.array(items, dtype=dtype).reshape(-1)
    else:
        raise MessageError(f"{where}: expected {field.ros_type} (a list or a 1-D numpy {dtype} array), "
                           f"got {_describe(value)}")
    _check_length(field, len(array_), where)
    return array_


def _check_array(field: _Field, value: np.ndarray, where: str) -> None:
    dtype = _DTYPES.get(field.element)
    if value.dtype != dtype:
        raise MessageError(f"{where}: expected {field.ros_type} (numpy {dtype}), got a numpy {value.dtype} array; "
                           f"convert it with .astype(np.{dtype})")
    if value.ndim != 1:
        raise MessageError(f"{where}: expected a 1-D array for {field.ros_type}, got shape {value.shape}; "
                           "flatten it with .reshape(-1)")
    _check_length(field, value.shape[0], where)


def _check_length(field: _Field, length: int, where: str) -> None:
    if field.count == "array" and length != field.size:
        raise MessageError(f"{where}: {field.ros_type} needs exactly {field.size} elements, got {length}")
    if field.count == "sequence" and field.size and length > field.size:
        raise MessageError(f"{where}: {field.ros_type} holds at most {field.size} elements, got {length}")


def _check_message_type(type_name: str, value: Any, where: str) -> None:
    if isinstance(value, type) or getattr(value, "__msgtype__", None) != type_name:
        raise MessageError(f"{where}: expected {type_name}, got {_describe(value)}")


def _check_scalar(field: _Field, value: Any, where: str) -> None:
    element = field.element
    if element in _STRINGS:
        if not isinstance(value, str):
            raise MessageError(f"{where}: expected {element}, got {_describe(value)}")
        if field.str_size and len(value) > field.str_size:
            raise MessageError(f"{where}: {element}<={field.str_size} holds at most {field.str_size} "
                               f"characters, got {len(value)}")
    elif element == "bool":
        if not isinstance(value, bool):
            raise MessageError(f"{where}: expected bool, got {_describe(value)}{_hint(value, 'bool')}")
    elif element in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            raise MessageError(f"{where}: expected {element}, got {_describe(value)}{_hint(value, 'int')}")
        low, high = _INT_RANGES[element]
        if not low <= value <= high:
            raise MessageError(f"{where}: {value} is out of range for {element} [{low}, {high}]")
    elif element in _FLOATS:
        if not isinstance(value, float):
            raise MessageError(f"{where}: expected {element}, got {_describe(value)}{_hint(value, 'float')}")
        if element == "float32" and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise MessageError(f"{where}: {value} is out of range for float32")
    else:
        raise MessageError(f"{where}: {element} is not supported by the embedded middleware")


def _hint(value: Any, python_type: str) -> str:
    if isinstance(value, np.generic):
        return f" (rclpy rejects numpy scalars too: use {python_type}(x) or .item())"
    if python_type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return f" (rclpy rejects int here too: write {value}.0 or float(x))"
    return ""


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__} (call it to make a message)"
    msgtype = getattr(value, "__msgtype__", None)
    if isinstance(msgtype, str):
        return f"a {msgtype} message"
    return f"{type(value).__name__} {_short.repr(value)}"


def _validate_fields(msg: Any, type_name: str, where: str) -> None:
    """Recursive check of a message built (or mutated) outside the checked constructor and setters."""
    for field in _fields(type_name):
        path = f"{where}.{field.name}"
        try:
            value = getattr(msg, field.attr)
        except AttributeError:
            raise MessageError(f"{path}: missing") from None
        if field.count == "" and not field.is_message:
            _check_scalar(field, value, path)
        elif field.count == "":
            _check_message_type(field.element, value, path)
            _validate_fields(value, field.element, path)
        elif field.is_message or field.element in _STRINGS:
            if not isinstance(value, list):
                raise MessageError(f"{path}: expected {field.ros_type} (a list), got {_describe(value)}")
            _check_length(field, len(value), path)
            for i, item in enumerate(value):
                if field.is_message:
                    _check_message_type(field.element, item, f"{path}[{i}]")
                    _validate_fields(item, field.element, f"{path}[{i}]")
                else:
                    _check_scalar(field, item, f"{path}[{i}]")
        else:
            if not isinstance(value, np.ndarray):
                raise MessageError(f"{path}: expected {field.ros_type} (a numpy array), got {_describe(value)}")
            _check_array(field, value, path)
            if not value.flags.c_contiguous:
                raise MessageError(f"{path}: the array is not contiguous; use np.ascontiguousarray")
