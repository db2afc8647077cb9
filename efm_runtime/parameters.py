"""Node parameters: declared with a type, a default, a description and bounds; overridden from YAML.

The type of a parameter is fixed at declaration (from its default, or given explicitly for a
parameter that has no default and must be set). Overrides are checked against that declaration, and
an override for a parameter the node never declares is an error naming the closest declared name:
a typo in a graph file must not silently leave a default in place on a robot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ParameterError, did_you_mean

BOOL, INTEGER, DOUBLE, STRING = "bool", "integer", "double", "string"
BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY = (
    "bool_array", "integer_array", "double_array", "string_array")
TYPES = (BOOL, INTEGER, DOUBLE, STRING, BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY)
_PYTHON_TYPES = {bool: BOOL, int: INTEGER, float: DOUBLE, str: STRING}


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    default: Any = None
    description: str = ""
    min: float | None = None
    max: float | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ParameterError(f"parameter '{self.name}': unknown type {self.type!r}; use one of {', '.join(TYPES)}")
        if (self.min is not None or self.max is not None) and self.type not in (INTEGER, DOUBLE):
            raise ParameterError(f"parameter '{self.name}': bounds only apply to integer and double parameters")


@dataclass
class Parameter:
    """What ``declare_parameter``/``get_parameter`` return, shaped like rclpy's Parameter."""
    name: str
    value: Any
    type: str


def infer_type(name: str, value: Any) -> str:
    """The parameter type a default value implies (``10`` is integer, ``10.0`` is double)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ParameterError(
                f"parameter '{name}': an empty list default does not say its element type; pass type=")
        element = type(value[0])
        return _PYTHON_TYPES[element] + "_array" if element in _PYTHON_TYPES else _bad(name, value)
    if type(value) in _PYTHON_TYPES:
        return _PYTHON_TYPES[type(value)]
    return _bad(name, value)


def _bad(name: str, value: Any) -> str:
    raise ParameterError(
        f"parameter '{name}': unsupported value {value!r} ({type(value).__name__}); use bool, int, float, "
        "str or a list of one of them")


def coerce(spec: ParameterSpec, value: Any) -> Any:
    """``value`` converted to the declared type, or a ParameterError saying what was expected."""
    element_type = spec.type.removesuffix("_array")
    if spec.type.endswith("_array"):
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"parameter '{spec.name}': expected a list of {element_type}, got {_show(value)}")
        out = [_coerce_scalar(spec, element_type, v, f"{spec.name}[{i}]") for i, v in enumerate(value)]
    else:
        out = _coerce_scalar(spec, element_type, value, spec.name)
        _check_bounds(spec, out)
    return out


def _coerce_scalar(spec: ParameterSpec, ptype: str, value: Any, label: str) -> Any:
    if ptype == BOOL and isinstance(value, bool):
        return value
    if ptype == INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if ptype == DOUBLE and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # YAML `10` for a double parameter is what the user meant
    if ptype == STRING and isinstance(value, str):
        return value
    raise ParameterError(f"parameter '{label}': expected {ptype}, got {_show(value)}")


def _check_bounds(spec: ParameterSpec, value: Any) -> None:
    if spec.min is not None and value < spec.min or spec.max is not None and value > spec.max:
        low = "-inf" if spec.min is None else spec.min
        high = "inf" if spec.max is None else spec.max
        raise ParameterError(f"parameter '{spec.name}': {value!r} is outside the allowed range [{low}, {high}]")


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


class ParameterStore:
    """Declared parameters of one node and the overrides it was started with."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._specs: dict[str, ParameterSpec] = {}
        self._values: dict[str, Any] = {}

    def declare(self, spec: ParameterSpec) -> Parameter:
        if spec.name in self._specs:
            raise ParameterError(f"parameter '{spec.name}' is declared twice")
        if spec.name in self._overrides:
            value = coerce(spec, self._overrides[spec.name])
        elif spec.default is not None:
            value = coerce(spec, spec.default)
        else:
            raise ParameterError(
                f"parameter '{spec.name}' ({spec.type}) is required and has no default: set it"
                + (f" ({spec.description})" if spec.description else ""))
        self._specs[spec.name] = spec
        self._values[spec.name] = value
        return Parameter(spec.name, value, spec.type)

    def get(self, name: str) -> Parameter:
        if name not in self._specs:
            raise ParameterError(f"parameter '{name}' is not declared" + did_you_mean(name, self._specs))
        return Parameter(name, self._values[name], self._specs[name].type)

    def set(self, name: str, value: Any) -> Parameter:
        self.get(name)  # raises with a suggestion when undeclared
        spec = self._specs[name]
        if spec.read_only:
            raise ParameterError(f"parameter '{name}' is read-only")
        self._values[name] = coerce(spec, value)
        return Parameter(name, self._values[name], spec.type)

    def has(self, name: str) -> bool:
        return name in self._specs

    @property
    def specs(self) -> dict[str, ParameterSpec]:
        return dict(self._specs)

    def check_overrides_used(self) -> None:
        """Raise for an override that names no declared parameter (a typo in the graph file)."""
        for name in self._overrides:
            if name not in self._specs:
                raise ParameterError(f"unknown parameter '{name}'" + did_you_mean(name, self._specs))
