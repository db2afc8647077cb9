"""The sim node keeps the hardware contract; recording, resuming and reading datasets (toy env: fast)."""
import numpy as np
import pytest

import toy_env
from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, Time, build_node, get_message
from efm_sim.demos import record_demos
from efm_sim.node import SimNode
from efm_trainer.episodes import episode_dirs, iter_episodes, read_episode, summarize_dataset

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
Clock = get_message("rosgraph_msgs/msg/Clock")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
Task = get_message("efm_msgs/msg/Task")
Header = get_message("std_msgs/msg/Header")


class Policy(Node):
    """Stands in for the policy node: answers every frame with a fixed chunk, records what it saw."""

    def __init__(self, options=None, chunk=None, horizon=1):
        super().__init__("policy", options)
        self.chunk, self.horizon = chunk, horizon
        self.frames, self.clock_ns, self.proprio = [], [], []
        self.pub = self.create_publisher(ActionChunk, "action", COMMANDS)
        self.task_pub = self.create_publisher(Task, "task", COMMANDS)
        self.create_subscription(Image, "camera/top/image_raw", self.on_frame, SENSOR_DATA)
        self.create_subscription(JointState, "joint_states", lambda m: self.proprio.append(list(m.position)), SENSOR_DATA)
        self.create_subscription(Clock, "/clock", lambda m: self.clock_ns.append(Time.from_msg(m.clock).nanoseconds), 100)
        self.active = False

    def on_frame(self, msg):
        self.frames.append(msg)
        if self.active and self.chunk is not None:
            self.pub.publish(ActionChunk(header=Header(stamp=msg.header.stamp), episode_id="e1", horizon=self.horizon,
                                         action_dim=2, values=[float(v) for v in self.chunk]))

    def start(self):
        self.active = True
        self.task_pub.publish(Task(episode_id="e1", instruction=""))


def build(ctx, control_hz=10.0, chunk_size=1, sim_time=True, chunk=None, horizon=1, **params):
    toy_env.register(control_hz, chunk_size)
    sim = build_node(SimNode, NodeOptions(namespace="/robot_a", context=ctx, parameters={
        "env": "toy", "use_sim_time": sim_time, **params}))
    policy = Policy(NodeOptions(namespace="/robot_a", context=ctx, parameters={"use_sim_time": sim_time}),
                    chunk=chunk, horizon=horizon)
    return sim, policy


def test_topics_and_types_match_the_hardware_contract(ctx):
    build(ctx)
    topics = {t.name: t.type_name for t in ctx.topic_statistics()}
    assert topics["/robot_a/camera/top/image_raw"] == "sensor_msgs/msg/Image"
    assert topics["/robot_a/joint_states"] == "sensor_msgs/msg/JointState"
    assert topics["/robot_a/action"] == "efm_msgs/msg/ActionChunk"
    assert topics["/robot_a/task"] == "efm_msgs/msg/Task"
    assert topics["/robot_a/episode"] == "efm_msgs/msg/EpisodeStatus"
    assert topics["/clock"] == "rosgraph_msgs/msg/Clock"


def test_lock_step_executes_each_action_then_observes(ctx):
    sim, policy = build(ctx, chunk=[0.05, 0.0])
    ctx.spin_until(lambda: policy.frames, 1.0)
    policy.start()
    ctx.spin_until(lambda: len(policy.frames) >= 6, 5.0)
    positions = [p[0] for p in policy.proprio[-4:]]
    assert np.allclose(np.diff(positions), 0.05)  # one 0.05 step per observed frame
    stamps = [Time.from_msg(f.header.stamp).nanoseconds for f in policy.frames[-4:]]
    assert np.all(np.diff(stamps) == 100_000_000)  # 10 Hz in sim time


def test_chunks_of_five_run_at_50_hz_in_sim_time(ctx):
    sim, policy = build(ctx, control_hz=50.0, chunk_size=5, chunk=[0.01, 0.0] * 5, horizon=5)
    ctx.spin_until(lambda: policy.frames, 1.0)
    policy.start()
    ctx.spin_until(lambda: len(policy.frames) >= 4, 5.0)
    clock = np.array(policy.clock_ns[-10:])
    assert np.all(np.diff(clock) == 20_000_000)  # one /clock per 50 Hz control step
    positions = [p[0] for p in policy.proprio[-3:]]
    assert np.allclose(np.diff(positions), 0.05)  # 5 x 0.01 per policy step


@pytest.mark.parametrize("values, horizon, why", [
    ([float("nan"), 0.0], 1, "non-finite"),
    ([0.05, 0.0, 0.05], 1, "3 values for horizon 1"),
])
def test_bad_action_is_refused_and_robot_holds_still(ctx, values, horizon, why, caplog):
    sim, policy = build(ctx, chunk=values, horizon=horizon)
    ctx.spin_until(lambda: policy.frames, 1.0)
    policy.start()
    ctx.spin_until(lambda: len(policy.frames) >= 5, 10.0)
    assert all(p == [0.0, 0.0] for p in policy.proprio)
    assert ctx.callback_errors == []  # refused and logged, not a crash


def test_scene_reset_service_answers_at_once_and_is_ready_after_the_delay(ctx):
    ResetScene = __import__("efm_runtime").get_service("efm_msgs/srv/ResetScene")
    String = get_message("std_msgs/msg/String")
    from efm_runtime import LATCHED

    sim, policy = build(ctx, reset_delay_s=2.0)
    ready = []
    policy.create_subscription(String, "scene_ready", lambda m: ready.append((m.data, sim.robot.sim_time_ns)), LATCHED)
    future = policy.create_client(ResetScene, "reset_scene").call_async(ResetScene.Request(seed=7))
    ctx.spin_until_future_complete(future, 1.0)
    answer = future.result()
    assert answer.success and answer.instruction.startswith("reach the goal")
    start_ns = sim.robot.sim_time_ns
    ctx.spin_until(lambda: ready, 10.0)
    assert ready[0][0] == answer.instruction
    assert ready[0][1] - start_ns == 2_000_000_000


def test_unknown_env_is_a_clear_error(ctx):
    from efm_runtime.errors import EfmUserError
    with pytest.raises(EfmUserError, match="unknown environment 'languge_table'; did you mean 'language_table'"):
        build_node(SimNode, NodeOptions(context=ctx, parameters={"env": "languge_table"}))


def test_recorded_episodes_match_what_was_published(tmp_path):
    toy_env.register()
    summary = record_demos("toy", "reach", 3, str(tmp_path), noise=0.0)
    assert summary == {"requested": 3, "skipped": 0, "recorded": 3, "succeeded": 3}
    for path in episode_dirs(tmp_path):
        episode = read_episode(path)
        seed = int(episode.metadata["seed"])
        env = toy_env.ToyEnv()
        env.reset(seed, env.sample_task(np.random.default_rng(seed), "reach"))
        assert episode.metadata["instruction"] == env.task.instruction
        actions = [np.asarray(m.values) for _, m in episode.topic("/action")]
        frames = [f for _, f in episode.images("top")]
        assert len(frames) == len(actions) + 1  # every action answers a frame; the last frame shows the result
        proprio = [np.asarray(m.position) for _, m in episode.topic("/joint_states")]
        for action, before, after in zip(actions, proprio, proprio[1:]):
            assert np.allclose(after, np.clip(before + np.clip(action, -0.1, 0.1), 0, 1))
        assert episode.metadata["outcome"] == "succeeded" and env.sample_task  # ground truth ended it


def test_rerun_skips_finished_episodes_and_removes_partial_ones(tmp_path):
    toy_env.register()
    record_demos("toy", "reach", 2, str(tmp_path))
    (tmp_path / ".toy-reach-000003.partial").mkdir()  # what a killed run leaves behind
    summary = record_demos("toy", "reach", 3, str(tmp_path))
    assert summary["skipped"] == 2 and summary["recorded"] == 1
    assert not (tmp_path / ".toy-reach-000003.partial").exists()
    assert len(episode_dirs(tmp_path)) == 3


def test_corrupt_episode_is_reported_and_skipped_with_its_path(tmp_path):
    toy_env.register()
    record_demos("toy", "reach", 2, str(tmp_path))
    broken = episode_dirs(tmp_path)[0]
    mcap = next(broken.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])  # truncated, e.g. a full disk
    summary = summarize_dataset(tmp_path)
    assert [p for p, _ in summary.unreadable] == [broken] and len(summary.episodes) == 1
    skipped = []
    assert len(list(iter_episodes(tmp_path, on_skip=lambda p, why: skipped.append(p)))) == 1
    assert skipped == [broken]


def test_dataset_info_and_view(tmp_path, capsys):
    from efm_runtime.cli import main

    toy_env.register()
    record_demos("toy", "reach", 2, str(tmp_path / "d"))
    assert main(["dataset", "info", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "episodes      2" in out and "success rate  100.0% (2/2)" in out
    episode = episode_dirs(tmp_path / "d")[0]
    assert main(["dataset", "view", str(episode), "--out", str(tmp_path / "sheet.png")]) == 0
    import cv2
    assert cv2.imread(str(tmp_path / "sheet.png")).shape[2] == 3
    assert main(["dataset", "view", str(episode), "--out", str(tmp_path / "x.gif")]) == 2
