import pytest

from efm_runtime.errors import RosNameError
from efm_runtime.names import expand_name, normalize_namespace, resolve_name


@pytest.mark.parametrize("name, expected", [
    ("chatter", "/robot_a/chatter"),
    ("/clock", "/clock"),
    ("camera/top/image_raw", "/robot_a/camera/top/image_raw"),
    ("~/debug", "/robot_a/policy/debug"),
    ("~", "/robot_a/policy"),
])
def test_expand_relative_absolute_private(name, expected):
    assert expand_name(name, "policy", "/robot_a") == expected


def test_root_namespace_has_no_double_slash():
    assert expand_name("chatter", "talker", "/") == "/chatter"
    assert normalize_namespace("robot_a/") == "/robot_a"
    assert normalize_namespace("") == "/"


@pytest.mark.parametrize("bad", ["2robot", "robot-a", "a//b", "chatter/"])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(RosNameError):
        expand_name(bad, "talker", "/robot_a")


def test_remap_matches_fully_qualified_name_in_node_namespace():
    remaps = {"chatter": "talk", "/clock": "/sim/clock"}
    assert resolve_name("chatter", "n", "/robot_a", remaps) == "/robot_a/talk"
    assert resolve_name("/robot_a/chatter", "n", "/robot_a", remaps) == "/robot_a/talk"
    assert resolve_name("/clock", "n", "/robot_a", remaps) == "/sim/clock"
    assert resolve_name("other", "n", "/robot_a", remaps) == "/robot_a/other"


def test_remap_to_absolute_name_leaves_namespace():
    assert resolve_name("chatter", "n", "/robot_a", {"chatter": "/shared"}) == "/shared"
