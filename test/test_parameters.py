import pytest

from efm_runtime.errors import ParameterError
from efm_runtime.parameters import (DOUBLE, INTEGER, INTEGER_ARRAY, STRING, ParameterSpec, ParameterStore,
                                    infer_type)


def test_types_inferred_from_defaults():
    assert infer_type("a", 10) == "integer"
    assert infer_type("a", 10.0) == "double"
    assert infer_type("a", True) == "bool"
    assert infer_type("a", "x") == "string"
    assert infer_type("a", [1.0, 2.0]) == "double_array"
    with pytest.raises(ParameterError, match="element type"):
        infer_type("a", [])


def test_override_replaces_default_and_int_widens_to_double():
    store = ParameterStore({"rate_hz": 20})
    value = store.declare(ParameterSpec("rate_hz", DOUBLE, 10.0)).value
    assert value == 20.0 and isinstance(value, float)


def test_wrong_type_names_parameter_and_value():
    store = ParameterStore({"rate_hz": "fast"})
    with pytest.raises(ParameterError, match=r"'rate_hz': expected double, got str 'fast'"):
        store.declare(ParameterSpec("rate_hz", DOUBLE, 10.0))


def test_bool_is_not_an_integer():
    with pytest.raises(ParameterError, match="expected integer"):
        ParameterStore({"n": True}).declare(ParameterSpec("n", INTEGER, 1))


def test_bounds_are_enforced():
    with pytest.raises(ParameterError, match=r"outside the allowed range \[0.1, 100.0\]"):
        ParameterStore({"rate_hz": 0.0}).declare(ParameterSpec("rate_hz", DOUBLE, 10.0, min=0.1, max=100.0))


def test_required_parameter_without_value():
    with pytest.raises(ParameterError, match="'model_dir' .* is required"):
        ParameterStore().declare(ParameterSpec("model_dir", STRING, None, "exported model folder"))


def test_unknown_override_suggests_declared_name():
    store = ParameterStore({"rat_hz": 5.0})
    store.declare(ParameterSpec("rate_hz", DOUBLE, 10.0))
    with pytest.raises(ParameterError, match="unknown parameter 'rat_hz'; did you mean 'rate_hz'"):
        store.check_overrides_used()


def test_array_elements_checked():
    with pytest.raises(ParameterError, match=r"'ids\[1\]': expected integer, got str 'two'"):
        ParameterStore({"ids": [1, "two"]}).declare(ParameterSpec("ids", INTEGER_ARRAY, [0]))


def test_read_only_and_set():
    store = ParameterStore()
    store.declare(ParameterSpec("gain", DOUBLE, 1.0))
    store.declare(ParameterSpec("robot", STRING, "a", read_only=True))
    assert store.set("gain", 2).value == 2.0
    with pytest.raises(ParameterError, match="read-only"):
        store.set("robot", "b")
    with pytest.raises(ParameterError, match="did you mean 'gain'"):
        store.get("gian")
