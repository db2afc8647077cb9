"""The episode manager: its core on constructed sequences, then the node with the real simulator.

Core tests call :class:`EpisodeManager` directly with a recording fake for its outputs. Node tests bring
up the real ``sim`` node (language_table, driver topic, lock-step sim time) on a manual wall clock with
a stand-in policy (answers each observation with a zero action) and a stand-in reward node (says
success at a chosen step), so every run is deterministic and takes no real time of its own.
"""
from __future__ import annotations

import re

import pytest

from efm_reset_supervisor.episode_manager import (RETRY_TICKS, EpisodeManager, ManagerSettings, ResetRequest,
                                                  Status, TaskInfo, episode_id_for)
from efm_reset_supervisor.episode_states import EpisodeState as S

NS = 1_000_000_000
UTC_NS = 1_767_225_600 * NS          # 2026-01-01T00:00:00Z


class Fake:
    """Records what the core publishes and asks for; the reset service may be made unavailable."""

    def __init__(self):
        self.tasks: list[TaskInfo] = []
        self.statuses: list[Status] = []
        self.resets: list[ResetRequest] = []
        self.logs: list[tuple[str, str]] = []
        self.service_ready = True

    def publish_task(self, task):
        self.tasks.append(task)

    def publish_status(self, status):
        self.statuses.append(status)

    def request_reset(self, request):
        if self.service_ready:
            self.resets.append(request)
        return self.service_ready

    def log(self, level, text):
        self.logs.append((level, text))

    def states(self):
        return [s.state for s in self.statuses]


def manager(**settings):
    fake = Fake()
    core = EpisodeManager(ManagerSettings(**{"robot": "robot_a", "max_steps": 5, **settings}), fake, lambda: UTC_NS)
    core.begin(0)
    return core, fake


def answer_reset(core, fake, instruction="push the red block", ready_first=False, now=0):
    """The simulator's side of the last reset_scene call: its answer and scene_ready, in either order."""
    request = fake.resets[-1]
    if ready_first:
        core.on_scene_ready(instruction, now)
    core.on_reset_answer(request.token, True, "ok", instruction, "block2block", now)
    if not ready_first:
        core.on_scene_ready(instruction, now)


def rewards(core, steps, success_at=None, now=0, episode_id=None):
    episode_id = episode_id or core.episode_id
    for step in steps:
        core.on_reward(episode_id, step, step == success_at, now)


# ---- the episode's life --------------------------------------------------------------------------
@pytest.mark.parametrize("ready_first", [False, True])
def test_auto_reset_starts_on_the_answer_and_scene_ready_in_either_order(ready_first):
    core, fake = manager(first_seed=7, seed_stride=3, embodiment="language_table", task_family="block2block")
    assert fake.states() == [S.WAITING_RESET] and fake.resets[0].seed == 7
    assert fake.resets[0].task_family == "block2block"
    answer_reset(core, fake, ready_first=ready_first, now=2 * NS)
    assert fake.states() == [S.WAITING_RESET, S.READY, S.RUNNING]
    task = fake.tasks[0]
    assert task.episode_id == "robot_a-20260101T000000-00001" == core.episode_id
    assert (task.instruction, task.seed, task.max_steps, task.embodiment, task.task_family) == \
        ("push the red block", 7, 5, "language_table", "block2block")
    assert fake.statuses[-1].started_ns == 2 * NS and fake.statuses[-1].instruction == "push the red block"


def test_success_ends_the_episode_at_the_successful_reward_then_the_next_seed_is_reset():
    core, fake = manager(first_seed=7, seed_stride=3)
    answer_reset(core, fake)
    for step in range(3):
        core.on_action(core.episode_id, step, "rl-0003")
    rewards(core, range(4), success_at=3)
    ended = fake.statuses[-2]
    assert ended.state is S.SUCCEEDED and ended.steps == 3 and ended.detector_success
    assert ended.policy_version == "rl-0003" and "success detected at step 3" in ended.message
    assert fake.statuses[-1].state is S.WAITING_RESET and fake.statuses[-1].episode_id == ended.episode_id
    assert [r.seed for r in fake.resets] == [7, 10]      # the next scene: first_seed + stride
    assert ("info", f"episode {ended.episode_id} succeeded after 3 steps (rl-0003): success detected at step 3; "
                    "success 1/1") in fake.logs
    answer_reset(core, fake)
    assert fake.tasks[-1].seed == 10 and fake.tasks[-1].episode_id.endswith("-00002")


def test_time_out_comes_with_the_reward_of_step_max_steps():
    core, fake = manager()
    answer_reset(core, fake)
    rewards(core, range(5))                     # d(o_0) .. d(o_4): the 5th action has no reward yet
    assert core.state is S.RUNNING
    rewards(core, [5])
    assert fake.statuses[-2].state is S.TIMED_OUT and fake.statuses[-2].steps == 5
    assert not fake.statuses[-2].detector_success and core.state is S.WAITING_RESET


def test_without_end_on_success_it_runs_to_max_steps_and_counts_as_succeeded():
    core, fake = manager(end_on_success=False)
    answer_reset(core, fake)
    rewards(core, range(5), success_at=2)
    assert core.state is S.RUNNING
    rewards(core, [5])
    ended = fake.statuses[-2]
    assert ended.state is S.SUCCEEDED and ended.steps == 5 and ended.detector_success


def test_rewards_and_actions_of_another_episode_are_ignored():
    core, fake = manager()
    answer_reset(core, fake)
    first = core.episode_id
    rewards(core, [0, 1], success_at=1)
    answer_reset(core, fake)
    core.on_reward(first, 2, True, 0)               # a late one of the last episode
    core.on_action(first, 5, "old")
    core.on_reward("", 5, False, 0)
    assert core.state is S.RUNNING and core.ended == 1
    rewards(core, range(6))
    assert fake.statuses[-2].state is S.TIMED_OUT and fake.statuses[-2].policy_version == ""


def test_reward_watchdog_aborts_naming_the_topic_and_is_off_while_paused():
    core, fake = manager(reward_timeout_s=2.0, reward_topic="/robot_a/reward")
    answer_reset(core, fake, now=1 * NS)
    core.tick(3 * NS)                                # exactly 2 s: not yet
    rewards(core, [0], now=3 * NS)
    core.pause("", "look", 4 * NS)
    core.tick(60 * NS)
    assert core.state is S.PAUSED
    core.resume("", "", 60 * NS)                     # the watchdog counts from the resume
    core.tick(62 * NS)
    assert core.state is S.RUNNING
    core.tick(62 * NS + 1)
    ended = fake.statuses[-2]
    assert ended.state is S.ABORTED and "no StepReward on /robot_a/reward for 2 s while running" in ended.message
    assert core.state is S.WAITING_RESET


def test_reward_timeout_zero_never_aborts():
    core, fake = manager(reward_timeout_s=0.0)
    answer_reset(core, fake)
    core.tick(10_000 * NS)
    assert core.state is S.RUNNING


def test_episodes_limit_stops_resets_and_starts():
    core, fake = manager(episodes=2, auto_start=False)
    for _ in range(2):
        answer_reset(core, fake)
        assert core.start_episode("", "", "", 0, 0, 0).accepted
        rewards(core, range(6))
    assert core.done and len(fake.resets) == 2
    core.tick(0)
    assert len(fake.resets) == 2 and fake.statuses[-1].message == "all 2 episodes done"
    assert ("info", "all 2 episodes done; success 0/2") in fake.logs
    assert core.reset_done("", "", 0).accepted
    reply = core.start_episode("", "push", "", 0, 0, 0)
    assert not reply.accepted and "all 2 episodes are done (parameter 'episodes')" in reply.message


# ---- scene resets --------------------------------------------------------------------------------
def test_a_scene_ready_from_before_the_request_does_not_count():
    core, fake = manager()
    request = fake.resets[0]
    core.on_scene_ready("old scene", 0)             # e.g. latched from the last reset, arrives late
    core.on_reset_answer(request.token, True, "", "new scene", "", 0)
    assert core.state is S.WAITING_RESET
    core.on_scene_ready("new scene", 0)
    assert core.state is S.RUNNING and fake.tasks[0].instruction == "new scene"


def test_refused_reset_is_asked_again_with_the_same_seed_and_unavailable_service_is_said_once():
    core, fake = manager()
    core.on_reset_answer(fake.resets[0].token, False, "a scene reset is already in progress", "", "", 0)
    assert any(level == "error" and "seed 1) refused: a scene reset is already in progress" in text
               for level, text in fake.logs)
    for _ in range(RETRY_TICKS - 1):
        core.tick(0)
    assert len(fake.resets) == 1
    fake.service_ready = False
    for _ in range(3):
        core.tick(0)
    assert [text for _, text in fake.logs if "reset_scene is not available" in text] == [
        "reset_scene is not available (is the simulator or the robot driver running?); asking again every tick"]
    fake.service_ready = True
    core.tick(0)
    assert [r.seed for r in fake.resets] == [1, 1]
    core.on_reset_answer(fake.resets[0].token, True, "", "stale answer", "", 0)   # an abandoned request's answer
    assert core.state is S.WAITING_RESET
    answer_reset(core, fake, "fresh")
    assert fake.tasks[0].instruction == "fresh"


def test_hardware_reset_uses_the_instruction_list_when_the_answer_has_none():
    core, fake = manager(instructions=["a", "b", "c"], first_seed=4)
    request = fake.resets[0]
    assert request.instruction == "b"               # seed 4 % 3
    core.on_reset_answer(request.token, True, "", "", "", 0)   # a driver that echoes nothing
    core.on_scene_ready("", 0)
    assert fake.tasks[0].instruction == "b"


# ---- a human resets the scene --------------------------------------------------------------------
def test_manual_reset_and_start_refuse_illegal_requests_without_changing_anything():
    core, fake = manager(auto_reset=False, auto_start=False, instructions=["push the red block"])
    assert fake.resets == [] and "waiting for a human" in fake.statuses[0].message
    refused = core.start_episode("", "x", "", 0, 0, 0)
    assert not refused.accepted and refused.message.startswith("start refused in state waiting_reset")
    assert core.reset_done("", "", 0).accepted and core.state is S.READY
    published = len(fake.statuses)
    double = core.reset_done("", "", 0)              # a double click
    assert not double.accepted and double.message.startswith("reset_done refused in state ready")
    assert len(fake.statuses) == published and core.state is S.READY
    reply = core.start_episode("", "", "", 3, 0, 0)
    assert reply.accepted and reply.episode_id == core.episode_id and fake.tasks[0].max_steps == 3
    assert fake.tasks[0].instruction == "push the red block" and fake.tasks[0].seed == 0
    published = len(fake.statuses)
    while_running = core.reset_done("", "", 0)
    assert not while_running.accepted and "reset_done refused in state running" in while_running.message
    assert not core.start_episode("", "x", "", 0, 0, 0).accepted
    assert len(fake.statuses) == published and core.state is S.RUNNING


def test_manual_reset_done_checks_robot_and_episode():
    core, fake = manager(auto_reset=False, instructions=["x"])
    wrong = core.reset_done("robot_b", "", 0)
    assert not wrong.accepted and "request for robot 'robot_b' reached robot 'robot_a'" in wrong.message
    assert not core.reset_done("", "robot_a-1", 0).accepted
    assert core.reset_done("/robot_a", "", 0).accepted and core.state is S.RUNNING   # auto_start
    rewards(core, range(6))
    stale = core.reset_done("", "robot_a-19990101T000000-00009", 0)
    assert not stale.accepted and "this robot's episode is" in stale.message
    assert core.reset_done("", core.episode_id, 0).accepted


def test_start_episode_request_overrides_the_scene():
    core, fake = manager(auto_start=False)
    answer_reset(core, fake, "scene instruction")
    reply = core.start_episode("robot_a", "other", "fam", 9, 42, 5 * NS)
    assert reply.accepted
    task = fake.tasks[0]
    assert (task.instruction, task.task_family, task.max_steps, task.seed) == ("other", "fam", 9, 42)


def test_settings_that_cannot_work_are_refused_with_the_field():
    with pytest.raises(ValueError, match="instructions is empty and auto_reset is false"):
        ManagerSettings(robot="r", auto_reset=False)
    with pytest.raises(ValueError, match="max_steps must be >= 1, got 0"):
        ManagerSettings(robot="r", max_steps=0)
    with pytest.raises(ValueError, match="robot must be a non-empty name"):
        ManagerSettings(robot="")


# ---- operator commands ---------------------------------------------------------------------------
def test_pause_and_resume_a_running_episode():
    core, fake = manager()
    answer_reset(core, fake)
    reply = core.pause("", "cable in the way", 0)
    assert reply.accepted and fake.statuses[-1].state is S.PAUSED
    assert fake.statuses[-1].message == "paused: cable in the way"
    assert not core.pause("", "", 0).accepted
    rewards(core, [0, 1, 2], success_at=2)          # while paused: ignored
    assert core.state is S.PAUSED
    assert core.resume("", "", 0).accepted and core.state is S.RUNNING
    assert fake.statuses[-1].episode_id == fake.tasks[0].episode_id
    assert not core.resume("", "", 0).message.startswith("resumed")


def test_estop_ends_the_running_episode_and_reset_done_clears_it():
    core, fake = manager()
    answer_reset(core, fake)
    core.on_action(core.episode_id, 0, "v1")
    core.on_action(core.episode_id, 1, "v1")
    assert core.estop("", "hand in the workspace", 0).accepted
    ended = fake.statuses[-1]
    assert ended.state is S.ESTOPPED and ended.steps == 2 and ended.message == "e-stop: hand in the workspace"
    assert core.ended == 1 and core.estop("", "", 0).accepted          # pressing twice is fine
    assert fake.statuses[-1] is ended                                    # ... and publishes nothing new
    for refused in (core.resume("", "", 0), core.start_episode("", "x", "", 0, 0, 0)):
        assert not refused.accepted and "only an explicit reset" in refused.message
    rewards(core, range(6), episode_id=ended.episode_id)
    assert core.state is S.ESTOPPED
    resets = len(fake.resets)
    reply = core.reset_done("", "", 0)
    assert reply.accepted and "e-stop cleared" in reply.message and core.state is S.WAITING_RESET
    assert len(fake.resets) == resets + 1                                # auto_reset: a fresh scene


def test_estop_while_waiting_abandons_the_reset_and_manual_reset_done_makes_it_ready():
    core, fake = manager(auto_reset=False, auto_start=False, instructions=["x"])
    core.estop("", "", 0)
    assert fake.states()[-1] is S.ESTOPPED and core.ended == 0
    assert core.reset_done("", "", 0).accepted
    assert fake.states()[-2:] == [S.WAITING_RESET, S.READY]

    core, fake = manager()
    request = fake.resets[0]
    core.estop("", "", 0)
    answer_reset(core, fake)                        # the abandoned reset's answer and scene_ready
    assert core.state is S.ESTOPPED and fake.tasks == []
    core.reset_done("", "", 0)
    assert fake.resets[-1].token != request.token and fake.resets[-1].seed == 1   # its scene was never used


def test_label_after_the_end_republishes_the_terminal_status_then_the_current_one():
    core, fake = manager(auto_reset=False, instructions=["x"])
    refused = core.label("", "", 1, 0)
    assert not refused.accepted and refused.message == "no episode has ended on this robot yet"
    core.reset_done("", "", 0)
    running = core.label("", "", 1, 0)
    assert not running.accepted and "still running (running); label it after it ends" in running.message
    rewards(core, range(6))
    first = core.episode_id
    assert not core.label("", "", 3, 0).accepted
    unknown = core.label("", "robot_a-x", 1, 0)
    assert not unknown.accepted and f"unknown episode 'robot_a-x'" in unknown.message and first in unknown.message
    published = len(fake.statuses)
    reply = core.label("", "", 1, 7 * NS)
    assert reply.accepted and reply.episode_id == first
    labelled, current = fake.statuses[published:]
    assert labelled.state is S.TIMED_OUT and labelled.human_label == 1 and labelled.stamp_ns == 7 * NS
    assert labelled.message == "max_steps 5 reached; labelled success by a human"
    assert current.state is S.WAITING_RESET and current.human_label == 1
    assert core.label("", first, 2, 8 * NS).accepted                  # a second label replaces the first
    assert fake.statuses[-2].message == "max_steps 5 reached; labelled failure by a human"


def test_episode_ids_follow_the_contract():
    assert episode_id_for("robot_a", UTC_NS + 61 * NS, 12) == "robot_a-20260101T000101-00012"
    assert re.fullmatch(r"fleet_robot_a-\d{8}T\d{6}-00001", episode_id_for("fleet/robot_a", UTC_NS, 1))


# ---- the node, with the real simulator -----------------------------------------------------------
from efm_runtime import (COMMANDS, LATCHED, SENSOR_DATA, Node, NodeOptions, Time, build_node,  # noqa: E402
                         get_message, get_service)
from efm_runtime.errors import ParameterError  # noqa: E402

PointStamped = get_message("geometry_msgs/msg/PointStamped")
Header = get_message("std_msgs/msg/Header")
String = get_message("std_msgs/msg/String")
Task = get_message("efm_msgs/msg/Task")
EpisodeStatus = get_message("efm_msgs/msg/EpisodeStatus")
StepReward = get_message("efm_msgs/msg/StepReward")
ActionChunk = get_message("efm_msgs/msg/ActionChunk")
ResetDone = get_service("efm_msgs/srv/ResetDone")
StartEpisode = get_service("efm_msgs/srv/StartEpisode")
RobotCommand = get_service("efm_msgs/srv/RobotCommand")
LabelEpisode = get_service("efm_msgs/srv/LabelEpisode")
ROBOT = "/lt_1"
TERMINAL = {EpisodeStatus.STATE_SUCCEEDED, EpisodeStatus.STATE_FAILED, EpisodeStatus.STATE_TIMED_OUT,
            EpisodeStatus.STATE_ABORTED, EpisodeStatus.STATE_ESTOPPED}


class StandIns(Node):
    """The policy (a zero action per observation, version "fake-1") and the reward node (step k for the
    k-th observation of an episode; success at ``success_at[i]`` in the i-th episode, None = never)."""

    def __init__(self, options, success_at=()):
        super().__init__("stand_ins", options)
        self.success_at, self.episode, self.step, self.count = list(success_at), None, 0, 0
        self.awake = True         # asleep: neither acts nor rewards (the sim then holds still, step by step)
        self.tasks, self.statuses, self.ready = [], [], []
        self.action_pub = self.create_publisher(ActionChunk, "action", COMMANDS)
        self.reward_pub = self.create_publisher(StepReward, "reward", COMMANDS)
        self.create_subscription(Task, "task", self.on_task, COMMANDS)
        self.create_subscription(EpisodeStatus, "episode", self.on_status, 100)
        self.create_subscription(PointStamped, "effector", self.on_observation, SENSOR_DATA)
        self.create_subscription(String, "scene_ready", lambda m: self.ready.append(m.data), LATCHED)
        self.clients = {name: self.create_client(srv, name) for name, srv in [
            ("reset_done", ResetDone), ("start_episode", StartEpisode), ("pause", RobotCommand),
            ("resume", RobotCommand), ("estop", RobotCommand), ("label_episode", LabelEpisode)]}

    def on_task(self, msg):
        self.tasks.append(msg)
        self.episode, self.step = msg.episode_id, 0
        self.success = self.success_at[self.count] if self.count < len(self.success_at) else None
        self.count += 1

    def on_status(self, msg):
        self.statuses.append(msg)
        if msg.state in TERMINAL and msg.episode_id == self.episode:
            self.episode = None

    def wake(self):
        """Answer the observation the lock-step sim has been waiting on since the stand-ins fell asleep."""
        self.awake = True
        self.on_observation(self.last)

    def on_observation(self, msg):
        self.last = msg
        if self.episode is None or not self.awake:
            return
        step = self.step
        self.step += 1
        self.reward_pub.publish(StepReward(header=Header(stamp=msg.header.stamp), episode_id=self.episode,
                                           step=step, success=step == self.success))
        self.action_pub.publish(ActionChunk(header=Header(stamp=msg.header.stamp), episode_id=self.episode,
                                            step=step, horizon=1, action_dim=2, values=[0.0, 0.0],
                                            policy_version="fake-1"))

    def ended(self):
        return [s for s in self.statuses if s.state in TERMINAL]


def call(ctx, node, service, **fields):
    client = node.clients[service]
    future = client.call_async(client.srv_type.Request(**fields))
    assert ctx.spin_until_future_complete(future, 5.0)
    return future.result()


def bring_up(ctx, success_at=(), **parameters):
    from efm_reset_supervisor.episode_manager_node import EpisodeManagerNode
    from efm_sim.node import SimNode

    options = dict(namespace=ROBOT, context=ctx)
    stand_ins = StandIns(NodeOptions(**options, parameters={"use_sim_time": True}), success_at)
    # The sim's lock-step waits are wall time: on the manual wall clock they cost nothing.
    build_node(SimNode, NodeOptions(**options, parameters={
        "env": "language_table", "task": "block2block", "driver": "topic", "use_sim_time": True,
        "reset_delay_s": 0.3}))
    manager = build_node(EpisodeManagerNode, NodeOptions(**options, parameters={
        "use_sim_time": True, "embodiment": "language_table", "task_family": "block2block", **parameters}))
    return stand_ins, manager


def test_node_runs_episodes_with_the_simulator_success_then_time_out_on_the_next_seed(ctx):
    stand_ins, manager = bring_up(ctx, success_at=(3, None), max_steps=6, first_seed=11, seed_stride=3, episodes=2)
    assert ctx.spin_until(lambda: len(stand_ins.ended()) == 2, 60.0)
    ctx.spin(0.5)   # anything late would come now
    first, second = stand_ins.ended()
    assert first.state == EpisodeStatus.STATE_SUCCEEDED and first.steps == 3 and first.detector_success
    assert second.state == EpisodeStatus.STATE_TIMED_OUT and second.steps == 6 and not second.detector_success
    assert {first.policy_version, second.policy_version} == {"fake-1"}
    tasks = stand_ins.tasks
    assert [t.seed for t in tasks] == [11, 14] and [t.episode_id for t in tasks] == [first.episode_id,
                                                                                      second.episode_id]
    assert all(re.fullmatch(r"lt_1-\d{8}T\d{6}-0000[12]", t.episode_id) for t in tasks)
    assert [t.instruction for t in tasks] == stand_ins.ready[-2:]        # the instruction the reset scene suits
    assert all(t.embodiment == "language_table" and t.max_steps == 6 and t.robot == "lt_1" for t in tasks)
    states = [s.state for s in stand_ins.statuses]
    W, R, RUN = EpisodeStatus.STATE_WAITING_RESET, EpisodeStatus.STATE_READY, EpisodeStatus.STATE_RUNNING
    assert states == [W, R, RUN, EpisodeStatus.STATE_SUCCEEDED, W, R, RUN, EpisodeStatus.STATE_TIMED_OUT, W]
    assert stand_ins.statuses[-1].message == "all 2 episodes done"
    started = Time.from_msg(stand_ins.statuses[2].started).nanoseconds
    assert started >= 300_000_000                           # after the sim's reset delay, in sim time
    assert manager.core.ended == 2 and manager.core.succeeded == 1
    assert ctx.callback_errors == []


def test_node_services_refuse_bad_calls_and_label_after_the_end(ctx):
    stand_ins, manager = bring_up(ctx, success_at=(2,), auto_reset=False, auto_start=False,
                                  instructions=["push the red block to the blue block"], max_steps=4)
    ctx.spin(0.2)
    assert manager.core.state is S.WAITING_RESET
    assert not call(ctx, stand_ins, "start_episode", instruction="x").accepted
    assert call(ctx, stand_ins, "reset_done").accepted
    double = call(ctx, stand_ins, "reset_done")
    assert not double.accepted and "reset_done refused in state ready" in double.message
    assert not call(ctx, stand_ins, "label_episode", label=1).accepted
    stand_ins.awake = False                  # the episode cannot end while the calls below are checked
    started = call(ctx, stand_ins, "start_episode", robot="lt_1")
    ctx.spin(0.05)
    assert started.accepted and [t.episode_id for t in stand_ins.tasks] == [started.episode_id]
    assert stand_ins.tasks[0].instruction == "push the red block to the blue block" and stand_ins.tasks[0].seed == 0
    assert not call(ctx, stand_ins, "reset_done").accepted
    running = call(ctx, stand_ins, "label_episode", label=1)
    assert not running.accepted and "still running" in running.message
    wrong = call(ctx, stand_ins, "pause", robot="lt_2")
    assert not wrong.accepted and "robot 'lt_2'" in wrong.message
    assert manager.core.state is S.RUNNING and stand_ins.ended() == []
    stand_ins.wake()
    assert ctx.spin_until(lambda: stand_ins.ended(), 30.0)
    ended = stand_ins.ended()[0]
    assert ended.state == EpisodeStatus.STATE_SUCCEEDED and ended.episode_id == started.episode_id
    unknown = call(ctx, stand_ins, "label_episode", episode_id="lt_1-nope", label=2)
    assert not unknown.accepted and "unknown episode 'lt_1-nope'" in unknown.message
    before = len(stand_ins.statuses)
    assert call(ctx, stand_ins, "label_episode", label=2).accepted
    ctx.spin(0.1)
    labelled, current = stand_ins.statuses[before:]
    assert labelled.state == EpisodeStatus.STATE_SUCCEEDED and labelled.human_label == EpisodeStatus.LABEL_FAILURE
    assert current.state == EpisodeStatus.STATE_WAITING_RESET
    assert call(ctx, stand_ins, "estop", reason="test").accepted
    assert not call(ctx, stand_ins, "resume").accepted
    cleared = call(ctx, stand_ins, "reset_done")
    assert cleared.accepted and manager.core.state is S.READY
    assert ctx.callback_errors == []


def test_node_without_a_robot_name_is_a_clear_parameter_error(ctx):
    from efm_reset_supervisor.episode_manager_node import EpisodeManagerNode

    with pytest.raises(ParameterError, match="parameter 'robot' is empty and the node runs in the root namespace"):
        build_node(EpisodeManagerNode, NodeOptions(context=ctx))
    with pytest.raises(ParameterError, match="instructions is empty and auto_reset is false"):
        build_node(EpisodeManagerNode, NodeOptions(namespace=ROBOT, context=ctx, parameters={"auto_reset": False}))
