"""The policy node on the embedded middleware, in sim time driven by /clock, with real tiny exported models.

Every test steps simulated time itself (publish /clock, then run the executor until it is idle), so
"10 Hz" is checked as an exact count of chunks and nothing depends on how fast this machine is.
Background model loads are waited for with ``wait_for_loads``; a loader that blocks on an event
stands in for a slow load, so "no missed tick during a swap" is shown, not timed.
"""
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from efm_policy.node import PolicyNode  # noqa: E402
from efm_policy.policy_loop import load_model  # noqa: E402
from efm_runtime import (COMMANDS, LATCHED, SENSOR_DATA, Node, NodeOptions, Time, build_node,  # noqa: E402
                         get_message, get_service)
from efm_runtime.clock import ManualWallSource  # noqa: E402
from efm_runtime.errors import ParameterError  # noqa: E402
from efm_policy.manifest import sha256_file  # noqa: E402
from tiny_model import INSTRUCTIONS, tiny_model_dir  # noqa: E402

Image = get_message("sensor_msgs/msg/Image")
PointStamped = get_message("geometry_msgs/msg/PointStamped")
Point = get_message("geometry_msgs/msg/Point")
Header = get_message("std_msgs/msg/Header")
Clock = get_message("rosgraph_msgs/msg/Clock")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
PolicyVersion = get_message("efm_msgs/msg/PolicyVersion")
LoadPolicy = get_service("efm_msgs/srv/LoadPolicy")

NS = "/robot_a"
PERIOD_NS = 100_000_000  # 10 Hz
HEIGHT, WIDTH = 36, 64   # camera frames; the model's input is 32x48, so the runtime resizes them


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """v1 and v2 for this robot ("toy"), and the same weights relabelled for two other embodiments
    (two exports instead of four: the embodiment check reads only the manifest)."""
    root = tmp_path_factory.mktemp("models")
    v1, v2 = tiny_model_dir(root, name="v1", seed=1), tiny_model_dir(root, name="v2", seed=2)
    return {"v1": v1, "v2": v2, "aloha": relabel(v1, root / "aloha", "aloha"),
            "language_table": relabel(v1, root / "lt", "language_table", version="lt")}


def relabel(model_dir, out, embodiment, version=None):
    shutil.copytree(model_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["embodiment"] = manifest["policy_config"]["embodiment"] = embodiment
    manifest["version"] = version or out.name
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


class Robot(Node):
    """Stands in for the camera driver, the episode manager, the trainer bridge and the action consumer."""

    def __init__(self, options=None):
        super().__init__("robot", options)
        self.clock_pub = self.create_publisher(Clock, "/clock", COMMANDS)
        self.image_pub = self.create_publisher(Image, "camera/top/image_raw", SENSOR_DATA)
        self.effector_pub = self.create_publisher(PointStamped, "effector", SENSOR_DATA)
        self.task_pub = self.create_publisher(Task, "task", COMMANDS)
        self.status_pub = self.create_publisher(EpisodeStatus, "episode", COMMANDS)
        self.version_pub = self.create_publisher(PolicyVersion, "policy_version", LATCHED)
        self.load_client = self.create_client(LoadPolicy, "load_policy")
        self.actions = []
        self.create_subscription(ActionChunk, "action", self.actions.append, COMMANDS)


class World:
    """Sim time, the robot's publishers and the executor, stepped by the test."""

    def __init__(self, ctx, models, load=None, **parameters):
        self.ctx, self.now_ns = ctx, 0
        self.robot = Robot(NodeOptions(namespace=NS, context=ctx, parameters={"use_sim_time": True}))
        params = {"use_sim_time": True, "model_dir": str(models["v1"]), **parameters}
        options = NodeOptions(namespace=NS, context=ctx, parameters=params)
        self.node = build_node(lambda o: PolicyNode(o, load=load), options) if load else build_node(PolicyNode, options)
        self.rng = np.random.default_rng(0)
        self.drain()

    def drain(self):
        while self.ctx.spin_once(0.0):
            pass

    def stamp(self):
        return Time(self.now_ns).to_msg()

    def frame(self, encoding="rgb8", data=None):
        pixels = self.rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        data = pixels.reshape(-1) if data is None else data
        self.robot.image_pub.publish(Image(header=Header(stamp=self.stamp()), height=HEIGHT, width=WIDTH,
                                           encoding=encoding, step=WIDTH * 3, data=data))

    def effector(self, x=0.1, y=0.2):
        self.robot.effector_pub.publish(PointStamped(header=Header(stamp=self.stamp()), point=Point(x=x, y=y, z=0.0)))

    def advance(self, seconds, dt_ns=PERIOD_NS, observe=True):
        """Move sim time on in steps of ``dt_ns``, publishing a fresh frame and effector at each step."""
        for _ in range(int(round(seconds * 1e9 / dt_ns))):
            self.now_ns += dt_ns
            self.robot.clock_pub.publish(Clock(clock=self.stamp()))
            if observe:
                self.frame()
                self.effector()
            self.drain()

    def start(self, episode_id, instruction=INSTRUCTIONS[0]):
        self.robot.task_pub.publish(Task(header=Header(stamp=self.stamp()), episode_id=episode_id,
                                         instruction=instruction, embodiment="toy"))
        self.drain()

    def end(self, episode_id, state=EpisodeStatus.STATE_SUCCEEDED):
        self.robot.status_pub.publish(EpisodeStatus(header=Header(stamp=self.stamp()), episode_id=episode_id,
                                                    state=state))
        self.drain()

    def load(self, model_dir, version="", manifest_sha256="", at_episode_boundary=True):
        future = self.robot.load_client.call_async(LoadPolicy.Request(
            version=version, model_dir=str(model_dir), manifest_sha256=manifest_sha256,
            at_episode_boundary=at_episode_boundary))
        self.ctx.spin_until_future_complete(future, 5.0)
        return future.result()

    def actions(self, episode_id=None):
        return [a for a in self.robot.actions if episode_id is None or a.episode_id == episode_id]


def test_publishes_exactly_rate_times_seconds_in_sim_time(ctx, models):
    world = World(ctx, models)
    world.start("e1")
    # /clock every 10 ms, a frame every 30 ms: 300 clock messages, ticks at each 100 ms of sim time
    for i in range(300):
        world.now_ns += 10_000_000
        world.robot.clock_pub.publish(Clock(clock=world.stamp()))
        if i % 3 == 2:
            world.frame()
            world.effector()
        world.drain()
    actions = world.actions("e1")
    assert len(actions) == 30  # 10 Hz x 3 simulated seconds, exactly
    assert [a.step for a in actions] == list(range(30))
    for k, action in enumerate(actions, start=1):
        tick_ns, stamp_ns = k * PERIOD_NS, Time.from_msg(action.header.stamp).nanoseconds
        assert tick_ns - 30_000_000 < stamp_ns <= tick_ns  # the newest frame at that tick
        assert action.latency_ms == pytest.approx((tick_ns - stamp_ns) / 1e6, abs=1e-3)
        assert action.policy_version == "v1" and (action.horizon, action.action_dim) == (1, 2)
        assert len(action.values) == 2 and np.all(np.abs(action.values) <= 0.1)  # the tokenizer's bounds
        assert len(action.tokens) == 2 and np.isfinite(action.log_prob) and action.inference_ms > 0
    assert ctx.callback_errors == []


def test_acts_only_while_an_episode_runs(ctx, models):
    world = World(ctx, models)
    world.advance(0.5)
    assert world.actions() == []
    world.start("e1")
    world.advance(0.3)
    world.end("e1", EpisodeStatus.STATE_TIMED_OUT)
    world.advance(0.3)
    world.start("e2")
    world.advance(0.2)
    assert [(a.episode_id, a.step) for a in world.actions()] == [("e1", 0), ("e1", 1), ("e1", 2), ("e2", 0), ("e2", 1)]


def test_stale_observation_is_refused_and_said_once_per_episode(ctx, models, logs):
    world = World(ctx, models)
    world.start("e1")
    world.advance(0.2)                       # fresh frames: 2 chunks
    world.advance(1.0, observe=False)        # no new frames: nothing new to answer, then too old
    assert len(world.actions("e1")) == 2     # the frame at 0.2 s is not answered again (0.1 and 0.2 s later)
    warnings = logs.said("WARNING", "observation too old")
    assert len(warnings) == 1
    assert "camera/top/image_raw is 0.300 s old" in warnings[0] and "effector is 0.300 s old" in warnings[0]
    assert "limit 0.200 s" in warnings[0]
    world.end("e1")
    world.start("e2")
    world.advance(0.5, observe=False)
    assert world.actions("e2") == [] and len(logs.said("WARNING", "observation too old")) == 2
    world.advance(0.2)                       # fresh again: acting resumes
    assert len(world.actions("e2")) == 2


def test_swaps_only_at_an_episode_boundary_without_missing_a_tick(ctx, models):
    release = threading.Event()

    def slow_load(request, embodiment):  # v2 takes "long": until the test releases it
        if request.version == "v2":
            assert release.wait(30.0)
        return load_model(request, embodiment)

    world = World(ctx, models, load=slow_load)
    world.start("e1")
    world.advance(0.5)
    reply = world.load(models["v2"], version="v2", at_episode_boundary=True)
    assert reply.accepted and reply.active_version == "v1"
    assert "loading v2" in reply.message and "background" in reply.message and "next episode" in reply.message
    world.advance(0.5)                       # the load is still blocked: the timer keeps ticking with v1
    release.set()
    assert world.node.wait_for_loads(30.0)
    world.advance(0.5)                       # loaded, but e1 still runs: v1 keeps acting
    assert world.node.loop.pending_version == "v2" and world.node.active_version == "v1"
    world.end("e1")
    assert world.node.active_version == "v2"  # no episode running: switched at once
    world.start("e2")
    world.advance(0.5)
    e1, e2 = world.actions("e1"), world.actions("e2")
    assert len(e1) == 15 and [a.step for a in e1] == list(range(15))  # 1.5 s at 10 Hz: no tick missed
    stamps = [Time.from_msg(a.header.stamp).nanoseconds for a in e1]
    assert np.all(np.diff(stamps) == PERIOD_NS)
    assert {a.policy_version for a in e1} == {"v1"} and {a.policy_version for a in e2} == {"v2"}
    assert len(e2) == 5 and ctx.callback_errors == []


def test_topic_swap_with_at_episode_boundary_false_switches_mid_episode(ctx, models, logs):
    world = World(ctx, models)
    world.start("e1")
    world.advance(0.3)
    world.robot.version_pub.publish(PolicyVersion(
        version="v2", model_dir=str(models["v2"]), manifest_sha256=sha256_file(models["v2"] / "manifest.json"),
        embodiment="toy", at_episode_boundary=False))
    world.drain()
    assert world.node.wait_for_loads(30.0)
    world.advance(0.3)
    assert [a.policy_version for a in world.actions("e1")] == ["v1"] * 3 + ["v2"] * 3
    assert logs.said("WARNING", "switched from v1 to v2 in the middle of episode e1")


def test_corrupt_model_is_refused_and_the_old_one_keeps_acting(ctx, models, logs, tmp_path):
    corrupt = tmp_path / "v2-corrupt"
    shutil.copytree(models["v2"], corrupt)
    onnx = bytearray((corrupt / "policy.onnx").read_bytes())
    onnx[len(onnx) // 2] ^= 0xFF
    (corrupt / "policy.onnx").write_bytes(bytes(onnx))

    world = World(ctx, models)
    world.start("e1")
    world.advance(0.3)
    world.robot.version_pub.publish(PolicyVersion(version="v2", model_dir=str(corrupt), embodiment="toy",
                                                  at_episode_boundary=True))
    world.drain()
    assert world.node.wait_for_loads(30.0)
    world.advance(0.3)
    world.end("e1")
    world.start("e2")
    world.advance(0.3)
    assert [a.policy_version for a in world.actions()] == ["v1"] * 9  # never a gap, never the corrupt model
    errors = logs.said("ERROR", "could not load v2", "policy.onnx is corrupt", "keeping v1")
    assert len(errors) == 1
    # a manifest sha256 that does not match is refused before loading; the reply says why
    reply = world.load(models["v2"], version="v2", manifest_sha256="0" * 64)
    assert not reply.accepted and "sha256" in reply.message and reply.active_version == "v1"


def test_model_for_another_embodiment_is_refused(ctx, models, logs):
    world = World(ctx, models)
    reply = world.load(models["aloha"])
    assert not reply.accepted and reply.active_version == "v1"
    assert "a model for 'aloha', but this robot is 'toy'" in reply.message
    world.robot.version_pub.publish(PolicyVersion(version="aloha", model_dir=str(models["aloha"])))
    world.drain()
    world.start("e1")
    world.advance(0.2)
    assert [a.policy_version for a in world.actions()] == ["v1", "v1"]
    assert len(logs.said("ERROR", "refused", "aloha", "a model for 'aloha'")) == 2  # the service, then the topic


def test_start_up_with_a_bad_model_dir_is_a_clear_parameter_error(ctx, models, tmp_path):
    with pytest.raises(ParameterError, match="parameter 'model_dir': .*no such model directory"):
        World(ctx, models, model_dir=str(tmp_path / "missing"))
    with pytest.raises(ParameterError, match="a model for 'aloha', but this robot is 'toy'"):
        World(ctx, models, model_dir=str(models["aloha"]), embodiment="toy")


def test_without_a_model_it_idles_until_one_is_loaded(ctx, models, logs):
    world = World(ctx, models, model_dir="")
    assert logs.said("INFO", "no model_dir: idle until")
    world.start("e1")
    world.advance(0.3)
    assert world.actions() == [] and len(logs.said("WARNING", "no model is loaded")) == 1
    reply = world.load(models["v1"])
    assert reply.accepted and reply.active_version == ""
    assert world.node.wait_for_loads(30.0)
    assert "as soon as it is loaded" in reply.message
    # No model acted in e1 yet, so acting from now on still gives e1 one version. The first tick after the
    # load takes the model and subscribes to its camera; the frames from then on are acted on.
    world.advance(0.3)
    assert [a.policy_version for a in world.actions("e1")] == ["v1", "v1"]


def test_nan_proprio_is_refused_for_that_tick(ctx, models, logs):
    world = World(ctx, models)
    world.start("e1")
    world.advance(0.2)
    world.now_ns += PERIOD_NS
    world.robot.clock_pub.publish(Clock(clock=world.stamp()))
    world.frame()
    world.effector(x=float("nan"))
    world.drain()
    assert len(world.actions()) == 2  # nothing published for the tick that saw NaN
    assert logs.said("ERROR", "effector: non-finite values")
    world.advance(0.2)
    assert len(world.actions()) == 4 and ctx.callback_errors == []


@pytest.mark.parametrize("encoding, data, problem", [
    ("bgr8", None, "encoding 'bgr8', the policy takes rgb8"),
    ("rgb8", np.zeros(100, np.uint8), "inconsistent rgb8 image: 64x36, step 192, 100 bytes"),
])
def test_bad_image_is_refused_for_that_tick(ctx, models, logs, encoding, data, problem):
    world = World(ctx, models)
    world.start("e1")
    world.advance(0.2)
    world.now_ns += PERIOD_NS
    world.robot.clock_pub.publish(Clock(clock=world.stamp()))
    world.frame(encoding=encoding, data=data)
    world.effector()
    world.drain()
    assert len(world.actions()) == 2
    assert logs.said("ERROR", "camera/top/image_raw", problem)
    world.advance(0.2)
    assert len(world.actions()) == 4 and ctx.callback_errors == []


def test_unknown_instruction_is_refused_with_the_reason(ctx, models, logs):
    world = World(ctx, models)
    world.start("e1", instruction="juggle the blocks")
    world.advance(0.3)
    assert world.actions() == []
    assert logs.said("ERROR", "'juggle the blocks' was not in training")


def test_paused_episode_holds_and_resumes(ctx, models):
    world = World(ctx, models)
    world.start("e1")
    world.advance(0.2)
    world.end("e1", EpisodeStatus.STATE_PAUSED)   # not terminal: holds
    world.advance(0.3)
    world.end("e1", EpisodeStatus.STATE_RUNNING)
    world.advance(0.2)
    assert [a.step for a in world.actions("e1")] == [0, 1, 2, 3]


def test_policy_node_is_listed_by_efm_nodes(capsys):
    from efm_runtime.cli import main

    assert main(["nodes"]) == 0
    assert "policy  " in capsys.readouterr().out


def test_shipped_graph_closes_the_loop_episode_by_episode(models):
    """config/sim_language_table_policy.yaml (lock-step sim time) on a manual wall clock: deterministic."""
    import yaml

    from efm_runtime.embedded import EmbeddedContext
    from efm_runtime.graph import parse_graph
    from efm_runtime.registry import node_entry_points
    from efm_runtime.runner import bring_up
    from efm_sim.registry import make_env

    path = Path(__file__).resolve().parents[1] / "config" / "sim_language_table_policy.yaml"
    data = yaml.safe_load(path.read_text())
    nodes = {n["executable"]: n for n in data["robots"]["lt_1"]["nodes"]}
    assert set(nodes) == {"sim", "policy", "sim_episodes"}
    nodes["policy"]["parameters"]["model_dir"] = str(models["language_table"])
    env = make_env("language_table")  # a scene whose instruction the tiny model knows (it has no text encoder)
    seed = next(s for s in range(1, 1000) if env.sample_task(np.random.default_rng(s), "block2block").instruction
                in INSTRUCTIONS)
    env.close()
    nodes["sim_episodes"]["parameters"].update(first_seed=seed, max_steps=20)
    ctx = EmbeddedContext(ManualWallSource())
    try:
        bring_up(parse_graph(data, str(path), known_executables=node_entry_points()), ctx)
        robot = Robot(NodeOptions(namespace="/lt_1", context=ctx))
        positions, statuses = [], []
        robot.create_subscription(PointStamped, "effector", lambda m: positions.append((m.point.x, m.point.y)),
                                  SENSOR_DATA)
        robot.create_subscription(EpisodeStatus, "episode", statuses.append, COMMANDS)
        assert ctx.spin_until(lambda: statuses, 10.0)  # reset (1 s) + 20 steps at 10 Hz, then the next episode
        first = statuses[0].episode_id
        actions = [a for a in robot.actions if a.episode_id == first]
        assert len(actions) == statuses[0].steps == 20  # one chunk per policy step of the episode
        assert [a.step for a in actions] == list(range(20))
        stamps = [Time.from_msg(a.header.stamp).nanoseconds for a in actions]
        assert np.all(np.diff(stamps) == PERIOD_NS)  # one chunk per camera frame, at 10 Hz
        assert {a.policy_version for a in actions} == {"lt"} and statuses[0].policy_version == "lt"
        assert len(set(positions)) > 1  # the robot moved under the policy
        assert ctx.callback_errors == []
    finally:
        ctx.shutdown()


# ---- one chunk per observation -------------------------------------------------------------------
JointState = get_message("sensor_msgs/msg/JointState")


def known_toy_env():
    """The toy environment, but every scene asks for an instruction the tiny model knows (it has no
    text encoder)."""
    import toy_env
    from efm_sim.env import TaskSpec
    from efm_sim.registry import register_env

    class KnownToyEnv(toy_env.ToyEnv):
        name = "toy_known"

        def sample_task(self, rng, task_name=None):
            task = super().sample_task(rng, task_name)
            return TaskSpec(INSTRUCTIONS[0], task.family, task.params)

    register_env("toy_known", lambda **kw: KnownToyEnv(), lambda env, noise=0.0, seed=0: toy_env.ToyOracle(env, noise, seed))
    return "toy_known"


class Referee(Node):
    """Created before the simulator, so each chunk reaches it first: notes which observation the
    simulator was waiting for when the chunk came, and what else happened."""

    def __init__(self, options=None):
        super().__init__("referee", options)
        self.sim = None
        self.answers, self.frames, self.statuses = [], [], []
        self.create_subscription(ActionChunk, "action", self.on_action, COMMANDS)
        self.create_subscription(Image, "camera/top/image_raw",
                                 lambda m: self.frames.append(Time.from_msg(m.header.stamp).nanoseconds), SENSOR_DATA)
        self.create_subscription(EpisodeStatus, "episode", self.statuses.append, COMMANDS)

    def on_action(self, msg):
        self.answers.append((msg, self.sim._observation_stamp_ns))


def test_lock_step_simulator_runs_at_full_speed_one_chunk_per_observation(ctx, models, logs):
    """The real simulator in lock-step sim time (toy env), the director and the policy: each observation
    is answered as soon as it is published, so an episode never waits for lock_step_timeout_s."""
    from efm_sim.director import DemoDirector
    from efm_sim.node import SimNode

    steps = 12
    env = known_toy_env()
    referee = Referee(NodeOptions(namespace=NS, context=ctx, parameters={"use_sim_time": True}))
    # The manual wall clock moves only while the executor has nothing to do, so the timeout (wall time)
    # cannot fire while the policy is still working, however slow this machine is.
    sim = build_node(SimNode, NodeOptions(namespace=NS, context=ctx, parameters={
        "env": env, "task": "reach", "use_sim_time": True, "lock_step_timeout_s": 5.0}))
    referee.sim = sim
    policy = build_node(PolicyNode, NodeOptions(namespace=NS, context=ctx, parameters={
        "use_sim_time": True, "model_dir": str(models["v1"]), "proprio_topic": "joint_states", "greedy": True}))
    assert policy.loop.settings.synchronized_inputs  # on by default under use_sim_time
    build_node(DemoDirector, NodeOptions(namespace=NS, context=ctx, name="sim_episodes", parameters={
        "use_sim_time": True, "task_family": "reach", "first_seed": 3, "episodes": 1, "max_steps": steps,
        "embodiment": "toy"}))
    started = ctx.wall.monotonic_ns()
    assert ctx.spin_until(lambda: referee.statuses, 30.0)
    ctx.spin(1.0)  # anything late would come now
    status = referee.statuses[0]
    assert status.state == EpisodeStatus.STATE_TIMED_OUT and status.steps == steps
    answers = [(msg, awaited) for msg, awaited in referee.answers if msg.episode_id == status.episode_id]
    assert len(answers) == steps and [msg.step for msg, _ in answers] == list(range(steps))
    stamps = [Time.from_msg(msg.header.stamp).nanoseconds for msg, _ in answers]
    assert stamps == [awaited for _, awaited in answers]  # each chunk answers the observation the sim waits on
    assert np.all(np.diff(stamps) == PERIOD_NS) and set(stamps) <= set(referee.frames)
    assert all(msg.latency_ms == 0.0 and msg.policy_version == "v1" for msg, _ in answers)
    assert not [text for _, text in logs if "no action within" in text]
    # the episode took no wall time of its own: only the reset and the gaps between the director's polls
    assert (ctx.wall.monotonic_ns() - started) / 1e9 < 2.0
    assert ctx.callback_errors == []


@pytest.mark.parametrize("synchronized", [False, True])
def test_a_tick_just_before_the_frame_acts_when_the_frame_arrives(ctx, models, synchronized):
    """Real-time behaviour, stepped in sim time: a tick that finds only the answered frame publishes
    nothing; the next frame is answered as it arrives (latency 0), and no frame is answered twice."""
    world = World(ctx, models, synchronized_inputs=synchronized)
    assert world.node.loop.settings.synchronized_inputs == synchronized

    def at(ms, frame):
        world.now_ns = ms * 1_000_000
        world.robot.clock_pub.publish(Clock(clock=world.stamp()))
        if frame:
            world.frame()
            world.effector()
        world.drain()

    world.start("e1")
    at(100, frame=True)    # tick at 100 ms: acts on the frame of 100 ms
    at(200, frame=False)   # tick: that frame is answered; nothing new
    at(230, frame=True)    # acted on as it arrives
    at(300, frame=False)   # tick: nothing new
    at(330, frame=True)    # acted on as it arrives
    at(350, frame=True)    # no tick since the last chunk: not yet
    at(360, frame=True)
    at(400, frame=False)   # tick: the newest frame, 360 ms
    at(500, frame=False)   # tick: nothing new
    actions = world.actions("e1")
    assert [Time.from_msg(a.header.stamp).nanoseconds // 1_000_000 for a in actions] == [100, 230, 330, 360]
    assert [a.latency_ms for a in actions] == [0.0, 0.0, 0.0, 40.0]
    assert [a.step for a in actions] == [0, 1, 2, 3] and ctx.callback_errors == []
