"""The reward node on the embedded middleware with a real tiny exported model: in the lock-step graph
with the real simulator and policy, and fed by hand in sim time for bad inputs, late frames and episodes.
"""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from efm_reward.node import RewardNode  # noqa: E402
from efm_runtime import COMMANDS, SENSOR_DATA, Node, NodeOptions, Time, build_node, get_message  # noqa: E402
from tiny_model import INSTRUCTIONS, tiny_model_dir  # noqa: E402

Image = get_message("sensor_msgs/msg/Image")
JointState = get_message("sensor_msgs/msg/JointState")
Header = get_message("std_msgs/msg/Header")
Clock = get_message("rosgraph_msgs/msg/Clock")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
StepReward = get_message("efm_msgs/msg/StepReward")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")

NS = "/robot_a"
PERIOD_NS = 100_000_000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("reward-models"), name="v1", seed=1)


class Watcher(Node):
    """Records actions, rewards, frames and episode statuses of the robot."""

    def __init__(self, options=None):
        super().__init__("watcher", options)
        self.actions, self.rewards, self.frames, self.statuses = [], [], [], []
        self.create_subscription(ActionChunk, "action", self.actions.append, COMMANDS)
        self.create_subscription(StepReward, "reward", self.rewards.append, COMMANDS)
        self.create_subscription(EpisodeStatus, "episode", self.statuses.append, COMMANDS)
        self.create_subscription(Image, "camera/top/image_raw",
                                 lambda m: self.frames.append(Time.from_msg(m.header.stamp).nanoseconds), SENSOR_DATA)


def stamp_ns(msg):
    return Time.from_msg(msg.header.stamp).nanoseconds


def test_lock_step_graph_publishes_one_reward_per_policy_step(ctx, model):
    """sim (lock-step, toy env) + director + policy + reward: a reward for every observation of the
    episode, the last one included, so every action t has its StepReward t+1."""
    from efm_policy.node import PolicyNode
    from efm_sim.director import DemoDirector
    from efm_sim.node import SimNode
    from test_policy_node import known_toy_env

    steps = 6
    watcher = Watcher(NodeOptions(namespace=NS, context=ctx, parameters={"use_sim_time": True}))
    build_node(SimNode, NodeOptions(namespace=NS, context=ctx, parameters={
        "env": known_toy_env(), "task": "reach", "use_sim_time": True, "lock_step_timeout_s": 5.0}))
    reward = build_node(RewardNode, NodeOptions(namespace=NS, context=ctx, parameters={
        "use_sim_time": True, "model_dir": str(model), "proprio_topic": "joint_states",
        "success_threshold": 0.0, "success_streak": 2}))
    build_node(PolicyNode, NodeOptions(namespace=NS, context=ctx, parameters={
        "use_sim_time": True, "model_dir": str(model), "proprio_topic": "joint_states", "greedy": True}))
    build_node(DemoDirector, NodeOptions(namespace=NS, context=ctx, name="sim_episodes", parameters={
        "use_sim_time": True, "task_family": "reach", "first_seed": 3, "episodes": 1, "max_steps": steps,
        "embodiment": "toy"}))
    assert ctx.spin_until(lambda: watcher.statuses, 30.0)
    ctx.spin(1.0)  # anything late would come now
    episode = watcher.statuses[0].episode_id
    actions = [a for a in watcher.actions if a.episode_id == episode]
    rewards = [r for r in watcher.rewards if r.episode_id == episode]
    assert len(actions) == steps and [r.step for r in rewards] == list(range(steps + 1))
    # step t is the observation action t answered; the one after the last action closes the episode
    assert [stamp_ns(r) for r in rewards[:-1]] == [stamp_ns(a) for a in actions]
    assert np.all(np.diff([stamp_ns(r) for r in rewards]) == PERIOD_NS) and set(map(stamp_ns, rewards)) <= set(watcher.frames)
    d = [r.steps_to_go for r in rewards]
    assert rewards[0].reward == 0.0
    assert [r.reward for r in rewards[1:]] == pytest.approx(np.subtract(d[:-1], d[1:]), abs=1e-5)
    assert all(r.reward_model_version == "v1" and not r.frame_late and r.success_threshold == 0.0 for r in rewards)
    assert all(0.0 < v <= 50.0 for v in d)  # the tiny model's bins reach 50 steps
    assert reward.published == steps + 1 and ctx.callback_errors == []


class Robot(Node):
    """Stands in for the lock-step simulator and the episode manager, stepped by hand."""

    def __init__(self, options=None):
        super().__init__("robot", options)
        self.clock_pub = self.create_publisher(Clock, "/clock", COMMANDS)
        self.image_pub = self.create_publisher(Image, "camera/top/image_raw", SENSOR_DATA)
        self.joints_pub = self.create_publisher(JointState, "joint_states", SENSOR_DATA)
        self.task_pub = self.create_publisher(Task, "task", COMMANDS)
        self.status_pub = self.create_publisher(EpisodeStatus, "episode", COMMANDS)
        self.rewards = []
        self.create_subscription(StepReward, "reward", self.rewards.append, COMMANDS)


class World:
    def __init__(self, ctx, model_dir, **parameters):
        self.ctx, self.now_ns = ctx, 0
        self.robot = Robot(NodeOptions(namespace=NS, context=ctx, parameters={"use_sim_time": True}))
        self.node = build_node(RewardNode, NodeOptions(namespace=NS, context=ctx, parameters={
            "use_sim_time": True, "model_dir": str(model_dir), "proprio_topic": "joint_states", **parameters}))
        self.rng = np.random.default_rng(0)
        self.drain()

    def drain(self):
        while self.ctx.spin_once(0.0):
            pass

    def observe(self, encoding="rgb8", joints=(0.1, 0.2), data=None, advance=True, frame=True):
        """One observation: /clock moves a period on, then a frame and the joints stamped alike."""
        if advance:
            self.now_ns += PERIOD_NS
        stamp = Time(self.now_ns).to_msg()
        self.robot.clock_pub.publish(Clock(clock=stamp))
        pixels = self.rng.integers(0, 256, (24, 32, 3), dtype=np.uint8).reshape(-1)
        if frame:
            self.robot.image_pub.publish(Image(header=Header(stamp=stamp), height=24, width=32, encoding=encoding,
                                               step=96, data=pixels if data is None else data))
        if joints is not None:
            self.robot.joints_pub.publish(JointState(header=Header(stamp=stamp), position=list(joints)))
        self.drain()

    def start(self, episode_id, instruction=INSTRUCTIONS[0]):
        self.robot.task_pub.publish(Task(episode_id=episode_id, instruction=instruction, embodiment="toy"))
        self.drain()

    def status(self, episode_id, state):
        self.robot.status_pub.publish(EpisodeStatus(episode_id=episode_id, state=state))
        self.drain()

    def steps(self, episode_id=None):
        return [(r.episode_id, r.step) for r in self.robot.rewards if episode_id in (None, r.episode_id)]


def test_evaluates_only_while_an_episode_runs_and_restarts_steps_per_task(ctx, model):
    world = World(ctx, model)
    world.observe()
    world.start("e1")
    # the episode's first observation is stamped like the one before the task: it is complete only
    # once every input has come again since the task
    world.observe(advance=False, joints=None)
    assert world.steps() == []
    world.observe(advance=False, frame=False)
    world.observe()
    world.status("e1", EpisodeStatus.STATE_TIMED_OUT)
    world.observe()
    world.start("e2")
    world.observe()
    assert world.steps() == [("e1", 0), ("e1", 1), ("e2", 0)]
    assert world.robot.rewards[-1].reward == 0.0 and ctx.callback_errors == []


@pytest.mark.parametrize("kind", ["encoding", "size", "nan"])
def test_a_bad_frame_is_an_error_and_publishes_nothing(ctx, model, logs, kind):
    world = World(ctx, model)
    world.start("e1")
    world.observe()
    bad = {"encoding": dict(encoding="bgr8"), "size": dict(data=np.zeros(100, np.uint8)),
           "nan": dict(joints=(float("nan"), 0.2))}[kind]
    world.observe(**bad)
    assert world.steps() == [("e1", 0)]
    needle = {"encoding": "'bgr8', the reward model takes rgb8", "size": "inconsistent rgb8 image",
              "nan": "joint_states: non-finite values"}[kind]
    assert logs.said("ERROR", "not evaluating the frame at 0.200 s", needle)
    world.observe()  # the node keeps going; the gap over the refused frame makes this one late
    assert world.steps() == [("e1", 0), ("e1", 1)]
    assert world.robot.rewards[1].frame_late and world.robot.rewards[1].reward == 0.0
    assert ctx.callback_errors == []


def test_an_unknown_instruction_is_refused_with_the_reason(ctx, model, logs):
    world = World(ctx, model)
    world.start("e1", instruction="juggle three blocks")
    world.observe()
    assert world.steps() == [] and logs.said("ERROR", "v1 refused the frame", "juggle three blocks")


def test_paused_episode_is_not_evaluated_and_resumes_late(ctx, model):
    world = World(ctx, model)
    world.start("e1")
    world.observe()
    world.status("e1", EpisodeStatus.STATE_PAUSED)
    world.observe()
    world.observe()
    world.status("e1", EpisodeStatus.STATE_RUNNING)
    world.observe()
    assert world.steps() == [("e1", 0), ("e1", 1)]
    assert world.robot.rewards[1].frame_late and world.robot.rewards[1].reward == 0.0


def test_first_frame_success_is_warned_and_counted(ctx, model, logs):
    world = World(ctx, model, success_threshold=1000.0, success_streak=1)
    world.start("e1")
    world.observe()
    world.observe()
    assert [r.success for r in world.robot.rewards] == [True, True]
    assert [r.success_streak for r in world.robot.rewards] == [1, 2]
    assert world.node.first_frame_successes == 1
    assert len(logs.said("WARNING", "episode e1: the first frame already has d =", "s = 1000")) == 1


def test_missing_model_is_an_error_and_the_node_keeps_running(ctx, tmp_path, logs):
    world = World(ctx, tmp_path / "nowhere")
    assert logs.said("ERROR", "no reward model, publishing no rewards", "nowhere")
    world.start("e1")
    world.observe()
    assert world.steps() == [] and logs.said("ERROR", "episode e1: no reward model")
    assert world.node.reward_model_version == "" and ctx.callback_errors == []


def test_real_time_mode_evaluates_the_newest_frame_each_period(ctx, model):
    """Without synchronized inputs a timer on the node clock takes the newest frame once per period; a
    camera that misses a period makes the next evaluated frame late."""
    world = World(ctx, model, synchronized_inputs=False)
    world.start("e1")
    for ms in range(50, 650, 50):
        world.now_ns = ms * 1_000_000
        if ms % 100 == 0:                       # a tick on the node clock at every 100 ms
            world.robot.clock_pub.publish(Clock(clock=Time(world.now_ns).to_msg()))
            world.drain()
        elif ms != 250:                         # a frame at every 50 ms past, but the camera drops 250 ms
            world.observe(advance=False)
    rewards = world.robot.rewards
    assert [stamp_ns(r) // 1_000_000 for r in rewards] == [50, 150, 350, 450, 550]  # 250 ms: no new frame
    assert [r.frame_late for r in rewards] == [False, False, True, False, False]
    assert [r.step for r in rewards] == [0, 1, 2, 3, 4] and ctx.callback_errors == []
