"""The trainer_bridge node on the embedded middleware (real-time context: its worker threads do real
network I/O to a fake learner on loopback): record -> hold for a label -> upload; new version -> hand-over."""
import io
import tarfile

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("onnx")

from bridge_fakes import (ActionChunk, EpisodeStatus, FakeLearner, Header, StepReward, Task, frame,  # noqa: E402
                          label, model_versions, spec_of, stamp)
from efm_runtime import COMMANDS, LATCHED, SENSOR_DATA, Node, NodeOptions, build_node, create_context  # noqa: E402
from efm_runtime import get_message, get_service  # noqa: E402
from efm_runtime.errors import ParameterError  # noqa: E402
from efm_trainer.bridge_node import TrainerBridge  # noqa: E402

Image = get_message("sensor_msgs/msg/Image")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
PolicyVersion = get_message("efm_msgs/msg/PolicyVersion")
LoadPolicy = get_service("efm_msgs/srv/LoadPolicy")
NS = "/robot_a"
WAIT_S = 30.0


class Robot(Node):
    """Stands in for the camera driver, the episode manager and the policy node (load_policy)."""

    def __init__(self, options=None):
        super().__init__("robot", options)
        self.image = self.create_publisher(Image, "camera/top/image_raw", SENSOR_DATA)
        self.effector = self.create_publisher(PointStamped, "effector", SENSOR_DATA)
        self.task = self.create_publisher(Task, "task", COMMANDS)
        self.status = self.create_publisher(EpisodeStatus, "episode", COMMANDS)
        self.action = self.create_publisher(ActionChunk, "action", COMMANDS)
        self.reward = self.create_publisher(StepReward, "reward", COMMANDS)
        self.versions, self.loads = [], []
        self.create_subscription(PolicyVersion, "policy_version", self.versions.append, LATCHED)
        self.create_service(LoadPolicy, "load_policy", self._load)

    def _load(self, request, response):
        self.loads.append(request)
        response.accepted, response.message, response.active_version = True, "loading", "sft-0000"
        return response

    def episode(self, episode_id, steps=3, final=EpisodeStatus.STATE_SUCCEEDED):
        self.task.publish(Task(header=Header(stamp=stamp(0)), robot="robot_a", episode_id=episode_id,
                               instruction="push the red moon to the blue cube", embodiment="toy", max_steps=10))
        for step in range(steps):
            self.image.publish(frame(step))
            self.effector.publish(PointStamped(header=Header(stamp=stamp(step))))
            self.action.publish(ActionChunk(header=Header(stamp=stamp(step)), episode_id=episode_id, step=step,
                                            horizon=1, action_dim=2, values=np.zeros(2, np.float32),
                                            tokens=np.zeros(2, np.uint16), policy_version="sft-0000"))
            self.reward.publish(StepReward(header=Header(stamp=stamp(step)), episode_id=episode_id, step=step,
                                           reward_model_version="sft-0000"))
        self.status.publish(EpisodeStatus(header=Header(stamp=stamp(steps)), robot="robot_a",
                                          episode_id=episode_id, state=final, steps=steps))


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    return model_versions(tmp_path_factory)


@pytest.fixture
def learner(versions):
    with FakeLearner(spec=spec_of(versions["sft-0000"])) as fake:
        fake.add_version(versions["sft-0000"])
        yield fake


@pytest.fixture
def ctx():
    context = create_context("embedded")
    yield context
    context.shutdown()


def bridge(ctx, tmp_path, learner, versions, **overrides):
    (tmp_path / "token").write_text("secret\n")
    params = {"learner_url": learner.url, "token_file": str(tmp_path / "token"), "spool_dir": str(tmp_path / "spool"),
              "models_dir": str(tmp_path / "models"), "model_dir": str(versions["sft-0000"]), "poll_s": 0.05,
              "retry_initial_s": 0.01, "retry_max_s": 0.05, "label_grace_s": 3600.0, **overrides}
    return build_node(TrainerBridge, NodeOptions(namespace=NS, context=ctx, parameters=params))


def drain(ctx):
    while ctx.spin_once(0.0):
        pass


def stored_metadata(learner, episode_id):
    with tarfile.open(fileobj=io.BytesIO(learner.bodies[episode_id])) as tar:
        document = yaml.safe_load(tar.extractfile(f"{episode_id}/metadata.yaml").read())
    return document["rosbag2_bagfile_information"]["custom_data"]


def test_episode_is_held_for_a_label_then_uploaded_with_it(ctx, tmp_path, learner, versions):
    node = bridge(ctx, tmp_path, learner, versions)
    robot = Robot(NodeOptions(namespace=NS, context=ctx))
    robot.episode("robot_a-1")
    drain(ctx)
    assert [p.name for p in node.spool.pending()] == ["robot_a-1"] and node._is_held("robot_a-1")
    robot.status.publish(label("robot_a-1", EpisodeStatus.LABEL_FAILURE))
    robot.episode("robot_a-2")  # the next episode starts: the first one's labelling window is over
    drain(ctx)
    assert node.uploader.wait_for(lambda s: s.uploaded == 1, WAIT_S)
    metadata = stored_metadata(learner, "robot_a-1")
    assert metadata["human_label"] == str(EpisodeStatus.LABEL_FAILURE) and metadata["robot"] == "robot_a"
    assert (metadata["policy_version"], metadata["reward_model_version"]) == ("sft-0000", "sft-0000")
    assert learner.headers["robot_a-1"]["x-policy-version"] == "sft-0000"
    assert node.spool.is_uploaded("robot_a-1") and [p.name for p in node.spool.pending()] == ["robot_a-2"]


def test_without_a_grace_period_episodes_go_at_once(ctx, tmp_path, learner, versions, logs):
    node = bridge(ctx, tmp_path, learner, versions, label_grace_s=0.0, stats_period_s=0.1)
    robot = Robot(NodeOptions(namespace=NS, context=ctx))
    robot.episode("robot_a-1")
    drain(ctx)
    assert node.uploader.wait_for(lambda s: s.uploaded == 1, WAIT_S)
    assert ctx.spin_until(lambda: any("uploads: 1 uploaded" in t for _, t in logs), WAIT_S)


def test_a_new_version_is_downloaded_and_handed_to_the_policy_node(ctx, tmp_path, learner, versions):
    node = bridge(ctx, tmp_path, learner, versions)
    robot = Robot(NodeOptions(namespace=NS, context=ctx))
    learner.add_version(versions["rl-0001"])
    assert ctx.spin_until(lambda: robot.loads and robot.versions, WAIT_S)
    request, published = robot.loads[0], robot.versions[0]
    assert (request.version, request.at_episode_boundary) == ("rl-0001", True)
    assert request.model_dir == published.model_dir == str(tmp_path / "models" / "rl-0001")
    assert published.manifest_sha256 == request.manifest_sha256 and published.embodiment == "toy"
    assert node.sync.version == "rl-0001"


def test_corrupt_download_hands_nothing_over(ctx, tmp_path, learner, versions, logs):
    node = bridge(ctx, tmp_path, learner, versions)
    robot = Robot(NodeOptions(namespace=NS, context=ctx))
    learner.corrupt = {"policy.onnx"}
    learner.add_version(versions["rl-0001"])
    assert ctx.spin_until(lambda: node.sync.failures >= 2, WAIT_S)
    drain(ctx)
    assert robot.loads == [] and robot.versions == [] and node.sync.version == "sft-0000"
    assert not (tmp_path / "models" / "rl-0001").exists()


def test_wrong_token_stops_uploads_and_keeps_the_episode(ctx, tmp_path, learner, versions, logs):
    learner.token = "other"
    node = bridge(ctx, tmp_path, learner, versions, label_grace_s=0.0)
    robot = Robot(NodeOptions(namespace=NS, context=ctx))
    robot.episode("robot_a-1")
    drain(ctx)
    assert node.uploader.wait_for(lambda s: node.uploader.stopped is not None, WAIT_S)
    assert "token_file" in node.uploader.stopped and [p.name for p in node.spool.pending()] == ["robot_a-1"]


def test_missing_token_is_explained(ctx, tmp_path, learner, versions):
    with pytest.raises(ParameterError, match="no learner token: set parameter 'token_file'"):
        bridge(ctx, tmp_path, learner, versions, token_file="")
    with pytest.raises(ParameterError, match="parameter 'token_file': cannot read"):
        bridge(ctx, tmp_path, learner, versions, token_file=str(tmp_path / "absent"))
