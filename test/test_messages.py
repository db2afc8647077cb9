"""efm_msgs definitions and the embedded message classes of efm_runtime.messages.

Every .msg file and every .srv half found on disk is covered automatically: values for every field
are built from the field definitions, so a new file or field needs no new test.
"""
from __future__ import annotations

import copy
import pickle
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from efm_runtime import messages
from efm_runtime.backend import middleware
from efm_runtime.errors import MessageError
from efm_runtime.messages import (
    deserialize, embedded_typestore, get_message, get_service, message_type_name, serialize,
    validate_message,
)

pytestmark = pytest.mark.skipif(middleware() != "embedded",
                                reason="embedded message classes; rerun with EFM_MIDDLEWARE=embedded")

MSGS = Path(__file__).resolve().parents[1] / "efm_msgs"
MSG_FILES = sorted((MSGS / "msg").glob("*.msg"))
SRV_FILES = sorted((MSGS / "srv").glob("*.srv"))
MSG_TYPES = [f"efm_msgs/msg/{p.stem}" for p in MSG_FILES]
SRV_HALVES = [f"efm_msgs/srv/{p.stem}_{half}" for p in SRV_FILES for half in ("Request", "Response")]

BASE, NAME, ARRAY, SEQUENCE = 1, 2, 3, 4  # rosbags Nodetype values
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1),
              "int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1),
              "uint64": (0, 2**64 - 1)}
DTYPES = {"bool": np.bool_, "float32": np.float32, "float64": np.float64, **{k: getattr(np, k) for k in INT_RANGES}}


# ---- sample values built from the field definitions ------------------------------------------------

def sample_scalar(base: str, i: int, str_size: int = 0):
    """A value of ``base`` that is not its default; ``i`` makes fields of one message differ."""
    if base == "bool":
        return True
    if base == "string":
        text = f"ü value {i}"  # non-ASCII: strings travel as UTF-8
        return text[:str_size] if str_size else text
    if base in INT_RANGES:
        low, high = INT_RANGES[base]
        return low + i if low < 0 else high - i  # the extremes of the type catch width and sign errors
    if base == "float32":
        return 1.5 + i  # exactly representable in float32
    if base == "float64":
        return 0.1 + i
    raise AssertionError(f"no sample for {base}")


def sample_value(desc, i: int):
    kind, detail = desc
    if kind == BASE:
        return sample_scalar(detail[0], i, detail[1])
    if kind == NAME:
        return sample_message(detail)
    (inner_kind, inner), size = detail
    length = size if kind == ARRAY else min(size or 3, 3)
    if inner_kind == NAME:
        return [sample_message(inner) for _ in range(length)]
    if inner[0] == "string":
        return [sample_scalar("string", i + k, inner[1]) for k in range(length)]
    if inner[0] == "bool":
        return np.array([k % 2 == 0 for k in range(length)], dtype=np.bool_)
    return np.array([sample_scalar(inner[0], i + k) for k in range(length)], dtype=DTYPES[inner[0]])


def sample_message(type_name: str):
    fields = embedded_typestore().fielddefs[type_name][1]
    values = {name: sample_value(desc, i) for i, (name, desc) in enumerate(fields)}
    return get_message(type_name)(**values)


def assert_same(a, b, path: str) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), path
    elif hasattr(a, "__msgtype__"):
        assert message_type_name(b) == message_type_name(a), path
        for name, _ in embedded_typestore().fielddefs[a.__msgtype__][1]:
            assert_same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{k}]")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


# ---- definitions on disk ----------------------------------------------------------------------------

def test_definitions_exist():
    assert {"Task", "ActionChunk", "StepReward", "EpisodeStatus", "PolicyVersion"} <= {p.stem for p in MSG_FILES}
    assert {"StartEpisode", "ResetDone", "LabelEpisode", "LoadPolicy", "ResetScene", "RobotCommand"} <= {
        p.stem for p in SRV_FILES}


@pytest.mark.parametrize("path", MSG_FILES + SRV_FILES, ids=lambda p: p.name)
def test_every_field_and_constant_is_documented(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("#"), f"{path.name}: start with a comment saying who publishes it where"
    for number, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith("#") or text == "---":
            continue
        definition = text.split("#", 1)[0].split()
        where = f"{path.name}:{number + 1}: {text!r}"
        documented = "#" in text or (number > 0 and lines[number - 1].strip().startswith("#"))
        assert documented, f"{where} needs a '#' comment on or directly above it (meaning and units)"
        if "=" not in text.split("#", 1)[0]:
            assert len(definition) == 2, f"{where}: default values are not applied by the embedded middleware"


def test_cmake_lists_exactly_the_files_on_disk():
    cmake = (MSGS / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(r"rosidl_generate_interfaces\((.*?)\)", cmake, re.S)
    assert block, "CMakeLists.txt has no rosidl_generate_interfaces(...)"
    listed = re.findall(r'"((?:msg|srv)/[^"]+)"', block.group(1))
    on_disk = [f"msg/{p.name}" for p in MSG_FILES] + [f"srv/{p.name}" for p in SRV_FILES]
    assert sorted(listed) == sorted(on_disk)
    assert len(listed) == len(set(listed))
    assert "DEPENDENCIES std_msgs builtin_interfaces" in block.group(1)


def test_package_xml_is_an_interface_package():
    root = ET.parse(MSGS / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "efm_msgs"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert root.findtext("export/build_type") == "ament_cmake"
    assert {e.text for e in root.findall("buildtool_depend")} == {"ament_cmake", "rosidl_default_generators"}
    assert {e.text for e in root.findall("depend")} >= {"std_msgs", "builtin_interfaces"}


# ---- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name", MSG_TYPES + SRV_HALVES)
def test_round_trip_with_every_field_set(type_name):
    msg = sample_message(type_name)
    default = get_message(type_name)()
    for name, _ in embedded_typestore().fielddefs[type_name][1]:  # the sample really sets every field
        with pytest.raises(AssertionError):
            assert_same(getattr(msg, name), getattr(default, name), name)
    data = serialize(msg)
    assert isinstance(data, bytes) and data[:4] == b"\x00\x01\x00\x00"  # CDR little endian
    back = deserialize(data, type_name)
    assert type(back) is get_message(type_name)
    assert_same(msg, back, type_name)
    assert back == msg
    validate_message(back, type_name)


def test_image_round_trip_and_bytes_equal_plain_rosbags():
    from rosbags.typesys import Stores, get_typestore

    Image = get_message("sensor_msgs/msg/Image")
    pixels = np.random.default_rng(0).integers(0, 256, size=(180, 320, 3), dtype=np.uint8)
    Header, Time = get_message("std_msgs/msg/Header"), get_message("builtin_interfaces/msg/Time")
    img = Image(header=Header(stamp=Time(sec=12, nanosec=345), frame_id="cam_top"), height=180, width=320,
                encoding="rgb8", is_bigendian=0, step=960, data=pixels.reshape(-1))
    back = deserialize(serialize(img), "sensor_msgs/msg/Image")
    assert np.array_equal(back.data.reshape(180, 320, 3), pixels) and back == img

    plain = get_typestore(Stores.ROS2_JAZZY)
    P = plain.types  # the rosbags dataclasses, untouched
    plain_img = P["sensor_msgs/msg/Image"](
        P["std_msgs/msg/Header"](P["builtin_interfaces/msg/Time"](12, 345), "cam_top"),
        180, 320, "rgb8", 0, 960, pixels.reshape(-1))
    assert serialize(img) == bytes(plain.serialize_cdr(plain_img, "sensor_msgs/msg/Image", little_endian=True))
    assert isinstance(img, P["sensor_msgs/msg/Image"]) and Image.__msgtype__ == "sensor_msgs/msg/Image"


def test_copy_and_pickle_keep_the_class_and_values():
    chunk = sample_message("efm_msgs/msg/ActionChunk")
    for other in (copy.deepcopy(chunk), pickle.loads(pickle.dumps(chunk))):
        assert type(other) is type(chunk) and other == chunk and other.values is not chunk.values


# ---- construction like rclpy ------------------------------------------------------------------------

def test_defaults_and_constants():
    task = get_message("efm_msgs/msg/Task")()
    assert (task.robot, task.episode_id, task.instruction, task.task_family, task.embodiment) == ("",) * 5
    assert task.max_steps == 0 and task.seed == 0
    assert task.header.frame_id == "" and task.header.stamp.sec == 0
    chunk = get_message("efm_msgs/msg/ActionChunk")()
    assert chunk.values.dtype == np.float32 and chunk.values.shape == (0,)
    assert chunk.tokens.dtype == np.uint16 and chunk.log_prob == 0.0 and isinstance(chunk.log_prob, float)
    status = get_message("efm_msgs/msg/EpisodeStatus")
    assert (status.STATE_WAITING_RESET, status.STATE_RUNNING, status.STATE_ESTOPPED) == (0, 2, 8)
    assert (status.LABEL_NONE, status.LABEL_SUCCESS, status.LABEL_FAILURE) == (0, 1, 2)
    assert status().state == status.STATE_WAITING_RESET and status().started.nanosec == 0
    assert get_service("efm_msgs/srv/LabelEpisode").Request.LABEL_FAILURE == 2


def test_fixed_arrays_and_message_sequences_default_like_rclpy():
    Cam = get_message("sensor_msgs/msg/CameraInfo")  # float64[9] k, float64[] d
    info = Cam()
    assert info.k.shape == (9,) and info.k.dtype == np.float64 and info.d.shape == (0,)
    with pytest.raises(MessageError, match=r"CameraInfo\.k: float64\[9\] needs exactly 9 elements, got 2"):
        Cam(k=[1.0, 2.0])
    assert get_message("sensor_msgs/msg/JointState")().name == []


def test_sequences_accept_lists_bytes_and_arrays():
    Chunk = get_message("efm_msgs/msg/ActionChunk")
    chunk = Chunk(values=[0.5, -1.0], tokens=[3, 65535])
    assert chunk.values.dtype == np.float32 and list(chunk.values) == [0.5, -1.0]
    assert chunk.tokens.dtype == np.uint16
    img = get_message("sensor_msgs/msg/Image")(data=b"\x01\x02\x03")
    assert img.data.dtype == np.uint8 and img.data.tolist() == [1, 2, 3]
    img.data = bytearray(b"\x04")  # setting converts too, as rclpy's setters do
    assert img.data.tolist() == [4]


def test_service_type():
    ResetDone = get_service("efm_msgs/srv/ResetDone")
    assert ResetDone.__srvtype__ == "efm_msgs/srv/ResetDone" == message_type_name(ResetDone)
    request = ResetDone.Request(robot="robot_a")
    assert request.episode_id == "" and message_type_name(request) == "efm_msgs/srv/ResetDone_Request"
    assert ResetDone.Response().accepted is False
    assert get_message("efm_msgs/srv/ResetDone_Response") is ResetDone.Response


def test_type_names():
    String = get_message("std_msgs/String")
    assert String is get_message("std_msgs/msg/String")
    assert message_type_name(String) == message_type_name(String(data="x")) == "std_msgs/msg/String"
    with pytest.raises(MessageError, match="not a ROS message"):
        message_type_name(3)


# ---- errors -----------------------------------------------------------------------------------------

def test_unknown_type_suggests_the_close_name():
    with pytest.raises(MessageError, match="efm_msgs/msg/Tsk.*did you mean 'efm_msgs/msg/Task'"):
        get_message("efm_msgs/msg/Tsk")
    with pytest.raises(MessageError, match="did you mean 'efm_msgs/srv/ResetDone'"):
        get_service("efm_msgs/srv/ResetDon")
    with pytest.raises(MessageError, match="use get_service"):
        get_message("efm_msgs/srv/ResetDone")
    with pytest.raises(MessageError, match="not a type name"):
        get_message("Task")


def test_wrong_field_type_names_type_and_field():
    Task = get_message("efm_msgs/msg/Task")
    with pytest.raises(MessageError, match=r"^efm_msgs/msg/Task\.max_steps: expected uint32, got str 'ten'$"):
        Task(max_steps="ten")
    with pytest.raises(MessageError, match=r"Task\.header: expected std_msgs/msg/Header, got a builtin_interfaces"):
        Task(header=get_message("builtin_interfaces/msg/Time")())
    task = Task()
    with pytest.raises(MessageError, match=r"Task\.robot: expected string, got int 5"):
        task.robot = 5


def test_rclpy_strictness_for_numbers():
    Reward = get_message("efm_msgs/msg/StepReward")
    with pytest.raises(MessageError, match=r"StepReward\.reward: expected float32, got int 1 \(rclpy rejects int"):
        Reward(reward=1)
    with pytest.raises(MessageError, match=r"expected float32, got float32 .*numpy scalars"):
        Reward(reward=np.float32(0.5))
    with pytest.raises(MessageError, match=r"StepReward\.step: expected uint32, got bool"):
        Reward(step=True)
    with pytest.raises(MessageError, match=r"ActionChunk\.values\[1\]: expected float32, got int 2"):
        get_message("efm_msgs/msg/ActionChunk")(values=[1.0, 2])
    wrong_dtype = r"ActionChunk\.values: expected float32\[\] \(numpy float32\), got a numpy float64 array"
    with pytest.raises(MessageError, match=wrong_dtype):
        get_message("efm_msgs/msg/ActionChunk")(values=np.zeros(3))
    with pytest.raises(MessageError, match=r"Image\.data: expected a 1-D array .* shape \(2, 2\)"):
        get_message("sensor_msgs/msg/Image")(data=np.zeros((2, 2), np.uint8))
    with pytest.raises(MessageError, match="out of range for float32"):
        Reward(reward=1e39)


def test_unknown_keyword_suggests_the_field():
    with pytest.raises(MessageError, match="efm_msgs/msg/Task has no field 'max_step'; did you mean 'max_steps'"):
        get_message("efm_msgs/msg/Task")(max_step=10)
    task = get_message("efm_msgs/msg/Task")()
    with pytest.raises(MessageError, match="did you mean 'instruction'"):
        task.instructions = "x"


def test_out_of_range_integers():
    Status = get_message("efm_msgs/msg/EpisodeStatus")
    with pytest.raises(MessageError, match=r"EpisodeStatus\.state: 256 is out of range for uint8 \[0, 255\]"):
        Status(state=256)
    with pytest.raises(MessageError, match="out of range for uint16"):
        get_message("efm_msgs/msg/ActionChunk")(tokens=[1, 70000])
    Status(state=Status.STATE_ESTOPPED)


def test_validate_message_catches_changes_behind_the_checks():
    Image = get_message("sensor_msgs/msg/Image")
    img = Image(data=np.zeros(180 * 320 * 3, np.uint8))
    with pytest.raises(MessageError, match=r"builtin_interfaces/msg/Time\.sec: expected int32"):
        img.header.stamp.sec = "late"  # setters check at once, like rclpy's
    object.__setattr__(img.header.stamp, "sec", "late")  # ...but nothing stops a determined caller
    with pytest.raises(MessageError, match=r"^sensor_msgs/msg/Image\.header\.stamp\.sec: expected int32, got str"):
        validate_message(img)
    joints = get_message("sensor_msgs/msg/JointState")(name=["a"])
    joints.name.append(3)  # in-place change of a list field
    with pytest.raises(MessageError, match=r"JointState\.name\[1\]: expected string, got int 3"):
        validate_message(joints)
    object.__setattr__(img.header.stamp, "sec", 1)
    object.__setattr__(img, "data", np.zeros(4, np.float32))
    with pytest.raises(MessageError, match=r"Image\.data: expected uint8\[\] \(numpy uint8\)"):
        validate_message(img)


def test_validate_message_checks_the_expected_type():
    String = get_message("std_msgs/msg/String")
    validate_message(String(data="x"), "std_msgs/msg/String")
    validate_message(String(data="x"), "std_msgs/String")
    with pytest.raises(MessageError, match="expected a efm_msgs/msg/Task message, got std_msgs/msg/String"):
        validate_message(String(), "efm_msgs/msg/Task")
    with pytest.raises(MessageError, match="not a message"):
        validate_message(String, "std_msgs/msg/String")


def test_deserialize_rejects_garbage():
    with pytest.raises(MessageError, match="could not deserialize efm_msgs/msg/Task"):
        deserialize(b"\x00\x01\x00\x00\xff\xff", "efm_msgs/msg/Task")


def test_msgs_dir_lookup(monkeypatch, tmp_path):
    assert messages.find_msgs_dir() == MSGS  # the source tree
    (tmp_path / "msg").mkdir()
    monkeypatch.setenv("EFM_MSGS_DIR", str(tmp_path))
    assert messages.find_msgs_dir() == tmp_path
    monkeypatch.setenv("EFM_MSGS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MessageError, match="EFM_MSGS_DIR"):
        messages.find_msgs_dir()


class NoPeeking(np.ndarray):
    """An array that fails if anyone reads its elements one by one."""

    def __iter__(self):
        raise AssertionError("validation iterated over the pixels")

    def __getitem__(self, item):
        raise AssertionError("validation indexed the pixels")

    def tolist(self):
        raise AssertionError("validation converted the pixels to a list")


def test_validation_checks_dtype_not_every_pixel():
    pixels = np.zeros(180 * 320 * 3, np.uint8).view(NoPeeking)
    img = get_message("sensor_msgs/msg/Image")(height=180, width=320, step=960, data=pixels)
    validate_message(img, "sensor_msgs/msg/Image")


def test_ros2_lookup_uses_the_generated_modules(monkeypatch):
    """The ros2 branch, against stand-ins for rosidl's generated modules (rclpy itself is not needed)."""
    msg_module, srv_module = types.ModuleType("fake_msgs.msg"), types.ModuleType("fake_msgs.srv")
    Thing = type("Thing", (), {"__module__": "fake_msgs.msg._thing"})
    Ask = type("Ask", (), {"__module__": "fake_msgs.srv._ask",
                           "Request": type("Ask_Request", (), {"__module__": "fake_msgs.srv._ask"}),
                           "Response": type("Ask_Response", (), {"__module__": "fake_msgs.srv._ask"})})
    msg_module.Thing, srv_module.Ask = Thing, Ask
    monkeypatch.setitem(sys.modules, "fake_msgs", types.ModuleType("fake_msgs"))
    monkeypatch.setitem(sys.modules, "fake_msgs.msg", msg_module)
    monkeypatch.setitem(sys.modules, "fake_msgs.srv", srv_module)
    monkeypatch.setattr(messages, "middleware", lambda: "ros2")

    assert get_message("fake_msgs/msg/Thing") is Thing and get_message("fake_msgs/Thing") is Thing
    assert get_service("fake_msgs/srv/Ask") is Ask and get_message("fake_msgs/srv/Ask_Request") is Ask.Request
    assert message_type_name(Thing()) == "fake_msgs/msg/Thing"
    assert message_type_name(Ask.Request) == "fake_msgs/srv/Ask_Request"
    with pytest.raises(MessageError, match="unknown type fake_msgs/msg/Thng; did you mean 'Thing'"):
        get_message("fake_msgs/msg/Thng")
    with pytest.raises(MessageError, match="'no_such_msgs' is not installed or its workspace is not sourced"):
        get_message("no_such_msgs/msg/Thing")
    validate_message(Thing(), "fake_msgs/msg/Thing")
    with pytest.raises(MessageError, match="embedded message class used on the ros2 middleware"):
        validate_message(messages._embedded_message("std_msgs/msg/String")())
