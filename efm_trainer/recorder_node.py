"""Episode recorder: writes every episode a robot runs to one rosbag2 (MCAP) directory.

An episode starts when ``task`` arrives and ends with a terminal ``episode`` status; in between,
camera frames (stored JPEG-compressed as ``/camera/<name>/image_raw/compressed``), proprio, action
chunks and rewards are written with their header stamps. Topics are stored relative to the robot;
the robot, task and outcome go into the bag's metadata. See ``efm_trainer.episodes`` for the
crash-safe write (temporary name, fsync, rename).

Topics (robot namespace): subscribes ``task``, ``episode``, ``action``, ``reward``,
``camera/<name>/image_raw`` for each of ``cameras``, and ``effector`` or ``joint_states``.
Parameters: ``out_dir`` (required), ``cameras`` (["top"]), ``proprio_topic`` ("effector"),
``jpeg_quality`` (90).
Run: ``ros2 run efm episode_recorder --ros-args -p out_dir:=/data/episodes`` or in a graph.
"""
from __future__ import annotations

from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, ParameterError, Time, get_message, run_node

from .episodes import EpisodeWriter, encode_image, image_msg_to_array

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Task = get_message("efm_msgs/msg/Task")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
StepReward = get_message("efm_msgs/msg/StepReward")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")

OUTCOMES = {
    EpisodeStatus.STATE_SUCCEEDED: "succeeded", EpisodeStatus.STATE_FAILED: "failed",
    EpisodeStatus.STATE_TIMED_OUT: "timed_out", EpisodeStatus.STATE_ABORTED: "aborted",
    EpisodeStatus.STATE_ESTOPPED: "estopped",
}
PROPRIO_TYPES = {"effector": PointStamped, "joint_states": JointState}


class EpisodeRecorder(Node):
    default_name = "episode_recorder"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        self._out_dir = self.declare_parameter("out_dir", type="string",
                                               description="dataset directory episodes are written to").value
        cameras = self.declare_parameter("cameras", ["top"], description="camera names to record").value
        proprio = self.declare_parameter("proprio_topic", "effector", description="effector or joint_states").value
        self._jpeg_quality = self.declare_parameter("jpeg_quality", 90, min=10, max=100,
                                                    description="JPEG quality of stored frames").value
        if proprio not in PROPRIO_TYPES:
            raise ParameterError(f"parameter 'proprio_topic' must be one of {sorted(PROPRIO_TYPES)}, got {proprio!r}")
        self._writer: EpisodeWriter | None = None
        self.completed: list[str] = []

        self.create_subscription(Task, "task", self._on_task, COMMANDS)
        self.create_subscription(EpisodeStatus, "episode", self._on_episode, COMMANDS)
        self.create_subscription(ActionChunk, "action", lambda m: self._write("/action", m), COMMANDS)
        self.create_subscription(StepReward, "reward", lambda m: self._write("/reward", m), COMMANDS)
        self.create_subscription(PROPRIO_TYPES[proprio], proprio, lambda m: self._write(f"/{proprio}", m), SENSOR_DATA)
        for camera in cameras:
            self.create_subscription(Image, f"camera/{camera}/image_raw",
                                     lambda m, c=camera: self._on_image(c, m), SENSOR_DATA)

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def _on_task(self, msg) -> None:
        if self._writer is not None:
            self.get_logger().warning(f"task {msg.episode_id} arrived while {self._writer.episode_id} was "
                                      "recording; closing that one as aborted")
            self._finish(outcome="aborted", success=False)
        self._writer = EpisodeWriter(self._out_dir, msg.episode_id, {
            "robot": msg.robot or self.get_namespace().strip("/"), "episode_id": msg.episode_id,
            "instruction": msg.instruction, "task_family": msg.task_family, "embodiment": msg.embodiment,
            "seed": msg.seed, "max_steps": msg.max_steps})
        self._write("/task", msg)

    def _on_image(self, camera: str, msg) -> None:
        if self._writer is not None:
            compressed = encode_image(image_msg_to_array(msg), msg.header.stamp, self._jpeg_quality)
            self._write(f"/camera/{camera}/image_raw/compressed", compressed)

    def _on_episode(self, msg) -> None:
        if self._writer is None or msg.episode_id != self._writer.episode_id:
            return
        self._write("/episode", msg)
        if msg.state in OUTCOMES:
            self._finish(outcome=OUTCOMES[msg.state], success=msg.state == EpisodeStatus.STATE_SUCCEEDED,
                         steps=msg.steps, human_label=msg.human_label)

    def _write(self, topic: str, msg) -> None:
        if self._writer is not None:
            self._writer.write(topic, msg, Time.from_msg(msg.header.stamp).nanoseconds)

    def _finish(self, **outcome) -> None:
        writer, self._writer = self._writer, None
        path = writer.close(**outcome)
        self.completed.append(writer.episode_id)
        self.get_logger().info(f"episode {writer.episode_id} saved: {path} ({outcome['outcome']})")

    def destroy_node(self) -> None:
        if self._writer is not None:  # an unfinished episode is not a dataset episode
            self.get_logger().warning(f"discarding unfinished episode {self._writer.episode_id}")
            self._writer.abort()
            self._writer = None
        super().destroy_node()


def main(args=None):
    return run_node(EpisodeRecorder, args)
