"""Episode recorder: writes every episode a robot runs to one rosbag2 (MCAP) directory.

An episode starts when ``task`` arrives and ends with a terminal ``episode`` status; in between,
camera frames (stored JPEG-compressed as ``/camera/<name>/image_raw/compressed``), proprio, action
chunks and rewards are written with their header stamps. Topics are stored relative to the robot;
the robot, task, outcome, policy version and reward model version go into the bag's metadata, and a
human label that comes after the end is added to it. The logic is :mod:`efm_trainer.recording`
(shared with the trainer bridge); see ``efm_trainer.episodes`` for the crash-safe write (temporary
name, fsync, rename).

Topics (robot namespace): subscribes ``task``, ``episode``, ``action``, ``reward``,
``policy_version`` (latched), ``camera/<name>/image_raw`` for each of ``cameras``, and ``effector``
or ``joint_states``.
Parameters: ``out_dir`` (required), ``cameras`` (["top"]), ``proprio_topic`` ("effector"),
``jpeg_quality`` (90), ``image_format`` (jpeg), ``record_ground_truth`` (false; simulation only: also record
``sim/ground_truth_success``, which experiments score the success detector against).
Run: ``ros2 run efm episode_recorder --ros-args -p out_dir:=/data/episodes`` or in a graph.
"""
from __future__ import annotations

from typing import NamedTuple

from efm_runtime import COMMANDS, LATCHED, SENSOR_DATA, Node, NodeOptions, ParameterError, get_message, run_node

from .episodes import IMAGE_FORMATS
from .recording import EpisodeRecording

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Task = get_message("efm_msgs/msg/Task")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
StepReward = get_message("efm_msgs/msg/StepReward")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
PolicyVersion = get_message("efm_msgs/msg/PolicyVersion")
Bool = get_message("std_msgs/msg/Bool")

PROPRIO_TYPES = {"effector": PointStamped, "joint_states": JointState}


class RecordingParameters(NamedTuple):
    cameras: list[str]
    proprio: str
    jpeg_quality: int
    image_format: str
    record_ground_truth: bool


def declare_recording_parameters(node: Node, image_format: str = "jpeg") -> RecordingParameters:
    """The parameters every recording node shares."""
    cameras = node.declare_parameter("cameras", ["top"], description="camera names to record").value
    proprio = node.declare_parameter("proprio_topic", "effector", description="effector or joint_states").value
    jpeg_quality = node.declare_parameter("jpeg_quality", 90, min=10, max=100,
                                          description="JPEG quality of stored frames").value
    image_format = node.declare_parameter(
        "image_format", image_format, description="jpeg (small, lossy) or png (lossless, about 2x the bytes): "
                                                  "stored frames").value
    ground_truth = node.declare_parameter(
        "record_ground_truth", False, description="also record sim/ground_truth_success (simulation only)").value
    if proprio not in PROPRIO_TYPES:
        raise ParameterError(f"parameter 'proprio_topic' must be one of {sorted(PROPRIO_TYPES)}, got {proprio!r}")
    if image_format not in IMAGE_FORMATS:
        raise ParameterError(f"parameter 'image_format' must be one of {', '.join(IMAGE_FORMATS)}, "
                             f"got {image_format!r}")
    return RecordingParameters(list(cameras), proprio, int(jpeg_quality), image_format, bool(ground_truth))


def subscribe_recording(node: Node, recording: EpisodeRecording, params: RecordingParameters) -> None:
    """Connect a node's topics to a recording core (with ``record_ground_truth``, also the simulator's
    ``sim/ground_truth_success``: experiments score the success detector against it)."""
    cameras, proprio = params.cameras, params.proprio
    if params.record_ground_truth:
        node.create_subscription(Bool, "sim/ground_truth_success", recording.on_ground_truth, COMMANDS)
    node.create_subscription(Task, "task", recording.on_task, COMMANDS)
    node.create_subscription(EpisodeStatus, "episode", recording.on_episode, COMMANDS)
    node.create_subscription(ActionChunk, "action", recording.on_action, COMMANDS)
    node.create_subscription(StepReward, "reward", recording.on_reward, COMMANDS)
    node.create_subscription(PolicyVersion, "policy_version", recording.on_policy_version, LATCHED)
    node.create_subscription(PROPRIO_TYPES[proprio], proprio, lambda m: recording.write(f"/{proprio}", m),
                             SENSOR_DATA)
    for camera in cameras:
        node.create_subscription(Image, f"camera/{camera}/image_raw",
                                 lambda m, c=camera: recording.on_image(c, m), SENSOR_DATA)


def node_log(node: Node):
    """A recording core's ``log(level, text)`` that goes to the node's logger."""
    return lambda level, text: getattr(node.get_logger(), level)(text)


class EpisodeRecorder(Node):
    default_name = "episode_recorder"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        out_dir = self.declare_parameter("out_dir", type="string",
                                         description="dataset directory episodes are written to").value
        params = declare_recording_parameters(self)
        self._recording = EpisodeRecording(out_dir, robot=self.get_namespace().strip("/"),
                                           jpeg_quality=params.jpeg_quality, log=node_log(self),
                                           image_format=params.image_format)
        subscribe_recording(self, self._recording, params)

    @property
    def recording(self) -> bool:
        return self._recording.recording

    @property
    def completed(self) -> list[str]:
        return self._recording.completed

    def destroy_node(self) -> None:
        self._recording.discard()
        super().destroy_node()


def main(args=None):
    return run_node(EpisodeRecorder, args)
