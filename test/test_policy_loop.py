"""The policy loop's decisions with fake models: no middleware, no ONNX, no torch, no sleeping."""
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from efm_policy.manifest import ModelDirError
from efm_policy.policy_loop import BackgroundLoader, LoopSettings, ModelRequest, PolicyLoop

S = 1_000_000_000
TOP = np.zeros((4, 6, 3), np.uint8)


@dataclass
class Sample:
    values: np.ndarray
    tokens: np.ndarray
    log_prob: float = -1.5
    inference_ms: float = 3.0


class FakeModel:
    """Returns ``values`` (or raises ``error``); records what it was given."""

    def __init__(self, version, embodiment="toy", values=(0.05, -0.05), history=2, error=None, inference_ms=3.0):
        self.version = version
        self.config = SimpleNamespace(cameras=("top",), history=history, proprio_dim=2, embodiment=embodiment)
        self.manifest = SimpleNamespace(tokenizers=SimpleNamespace(action=SimpleNamespace(
            low=(-0.1, -0.1), high=(0.1, 0.1), horizon=1, action_dim=2)))
        self.values, self.error, self.inference_ms = np.asarray(values, np.float32), error, inference_ms
        self.seen = []

    def act(self, frames, proprio, instruction, temperature=1.0, greedy=False, rng=None):
        self.seen.append((len(frames["top"]), list(proprio), instruction))
        if self.error:
            raise self.error
        return Sample(self.values.reshape(1, 2), np.array([[3, 4]]), inference_ms=self.inference_ms)


class Models:
    """A fake model store: check/load by directory name; a load can be held until released."""

    def __init__(self, **models):
        self.models = models
        self.hold = {}

    def check(self, request, embodiment):
        model = self.models.get(request.model_dir)
        if model is None:
            raise ModelDirError(f"{request.model_dir}: no such model directory")
        if isinstance(model, Exception):  # found only by the full load (e.g. a corrupt file)
            return request.model_dir
        if embodiment and model.config.embodiment != embodiment:
            raise ModelDirError(f"a model for {model.config.embodiment!r}, but this robot is {embodiment!r}")
        return model.version

    def load(self, request, embodiment):
        if request.model_dir in self.hold:
            assert self.hold[request.model_dir].wait(10.0)
        model = self.models[request.model_dir]
        if isinstance(model, Exception):
            raise model
        return model


def make(models, **settings):
    logs = []
    loop = PolicyLoop(LoopSettings(**settings), load=models.load, check=models.check,
                      log=lambda level, text: logs.append((level, text)), proprio_label="effector")
    return loop, logs


def observe(loop, now_ns, x=0.0):
    loop.add_frame("top", now_ns, TOP)
    loop.set_proprio(now_ns, [x, 0.0])


def said(logs, level, needle):
    return [t for lv, t in logs if lv == level and needle in t]


def test_settings_name_the_bad_field():
    with pytest.raises(ValueError, match="rate_hz must be a positive number, got 0"):
        LoopSettings(rate_hz=0)
    with pytest.raises(ValueError, match="max_observation_age_s must be > 0"):
        LoopSettings(max_observation_age_s=0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LoopSettings(temperature=0.0)
    assert LoopSettings(temperature=0.0, greedy=True).period_ms == 100.0


def test_acts_only_in_an_episode_and_counts_steps():
    loop, _ = make(Models(a=FakeModel("a")))
    loop.load_now(ModelRequest("a"))
    observe(loop, 0)
    assert loop.tick(0).skipped == "no episode running"
    loop.start_episode("e1", "push")
    chunks = []
    for t in range(1, 4):
        observe(loop, t * S // 10)
        chunks.append(loop.tick(t * S // 10).chunk)
    assert [c.step for c in chunks] == [0, 1, 2]
    assert chunks[-1].episode_id == "e1" and chunks[-1].policy_version == "a"
    assert chunks[-1].observation_stamp_ns == 3 * S // 10 and chunks[-1].values == pytest.approx([0.05, -0.05])
    loop.end_episode("e1")
    assert loop.tick(4 * S // 10).skipped == "no episode running"
    loop.start_episode("e2", "push")
    assert loop.tick(4 * S // 10).chunk.step == 0


def test_history_restarts_at_each_episode_as_in_training():
    model = FakeModel("a", history=2)
    loop, _ = make(Models(a=model))
    loop.load_now(ModelRequest("a"))
    for t in range(3):
        observe(loop, t)
    loop.start_episode("e1", "push")
    loop.tick(2)
    observe(loop, 3)
    loop.tick(3)
    assert [seen[0] for seen in model.seen] == [1, 2]  # one frame at the start, then the two newest


def test_stale_input_is_refused_and_said_once_per_episode():
    loop, logs = make(Models(a=FakeModel("a")), max_observation_age_s=0.2)
    loop.load_now(ModelRequest("a"))
    observe(loop, 0)
    loop.start_episode("e1", "push")
    assert loop.tick(S // 5).chunk is not None          # exactly the limit: acted on
    tick = loop.tick(S // 2)
    assert tick.chunk is None and "camera/top/image_raw is 0.500 s old" in tick.skipped
    assert "effector is 0.500 s old" in tick.skipped
    loop.tick(S)
    assert len(said(logs, "warning", "observation too old")) == 1
    loop.end_episode("e1")
    loop.start_episode("e2", "push")
    loop.tick(2 * S)
    assert len(said(logs, "warning", "observation too old")) == 2
    assert said(logs, "info", "episode e1 ended: 1 chunks with a, 2 ticks without acting")


def test_missing_input_is_named():
    loop, logs = make(Models(a=FakeModel("a")))
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push")
    loop.set_proprio(0, [0.0, 0.0])
    assert "no camera/top/image_raw message yet" in loop.tick(0).skipped


def test_refused_inputs_block_until_a_good_one_arrives():
    loop, logs = make(Models(a=FakeModel("a")))
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push")
    observe(loop, 0)
    loop.reject_frame("top", 1, "encoding 'bgr8', the policy takes rgb8")
    assert "camera/top/image_raw: encoding 'bgr8'" in loop.tick(1).skipped
    observe(loop, 2)
    assert loop.tick(2).chunk is not None
    loop.set_proprio(3, [float("nan"), 0.0])
    assert "effector: non-finite values" in loop.tick(3).skipped
    loop.set_proprio(4, [0.0, 0.0, 0.0])
    assert "effector: 3 values, but a takes 2" in loop.tick(4).skipped
    assert len(said(logs, "error", "not acting on a refused input")) == 2  # one per kind, not per tick


def test_actions_are_clamped_and_non_finite_ones_refused():
    models = Models(big=FakeModel("big", values=(0.5, -7.0)), nan=FakeModel("nan", values=(np.nan, 0.0)))
    loop, logs = make(models)
    loop.load_now(ModelRequest("big"))
    loop.start_episode("e1", "push")
    observe(loop, 0)
    assert loop.tick(0).chunk.values == [0.1, -0.1]
    loop.end_episode("e1")
    loop.load_now(ModelRequest("nan"))
    loop.start_episode("e2", "push")
    tick = loop.tick(0)
    assert tick.chunk is None and "non-finite action values" in tick.skipped
    assert said(logs, "error", "nan produced an unusable chunk")


def test_observation_errors_of_the_model_skip_the_tick():
    loop, logs = make(Models(a=FakeModel("a", error=ValueError("instruction 'x' was not in training"))))
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "x")
    observe(loop, 0)
    assert loop.tick(0).chunk is None
    assert said(logs, "error", "a refused the observation: instruction 'x' was not in training")


def test_slow_inference_is_reported_with_figures_and_throttled():
    loop, logs = make(Models(a=FakeModel("a", inference_ms=150.0)))
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push")
    for t in range(20):
        observe(loop, t * S // 10)
        loop.tick(t * S // 10)
    assert said(logs, "warning", "inference took 150.0 ms, longer than the 100.0 ms control period at 10 Hz")
    assert len(said(logs, "warning", "inference took")) == 1  # again only after 5 s of node-clock time


def test_a_new_model_waits_for_the_next_episode_and_a_failure_keeps_the_old_one():
    release = threading.Event()
    models = Models(a=FakeModel("a"), b=FakeModel("b"), broken=ModelDirError("policy.onnx is corrupt"))
    models.hold["b"] = release
    loop, logs = make(models)
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push")
    accepted, message = loop.request_model(ModelRequest("b", at_episode_boundary=True))
    assert accepted and "loading b" in message and "at the next episode start" in message
    assert loop.request_model(ModelRequest("b")) == (True, "b is already loading or waiting for the next episode")
    observe(loop, 0)
    assert loop.tick(0).chunk.policy_version == "a"  # the load is held: the loop does not wait for it
    release.set()
    assert loop.wait_for_loads(10.0)
    observe(loop, 1)                                 # a new observation: one is never answered twice
    assert loop.tick(1).chunk.policy_version == "a" and loop.pending_version == "b"
    loop.end_episode("e1")
    assert loop.active_version == "b"                # between episodes: at once
    accepted, _ = loop.request_model(ModelRequest("broken"))
    assert accepted
    assert loop.wait_for_loads(10.0)
    loop.start_episode("e2", "push")
    assert loop.active_version == "b"
    assert said(logs, "error", "could not load model from broken:")[0].endswith("policy.onnx is corrupt; keeping b")


def test_refusals_before_loading():
    models = Models(a=FakeModel("a"), other=FakeModel("other", embodiment="aloha"))
    loop, logs = make(models)
    loop.load_now(ModelRequest("a"))
    assert loop.embodiment == "toy"  # fixed by the first model
    accepted, message = loop.request_model(ModelRequest("other"))
    assert not accepted and "a model for 'aloha', but this robot is 'toy'; keeping a" in message
    accepted, message = loop.request_model(ModelRequest("nowhere"))
    assert not accepted and "no such model directory" in message
    assert loop.request_model(ModelRequest("a")) == (True, "a is already the active policy")
    assert not loop._loader.busy


def test_background_loader_reports_every_result_and_can_be_waited_for():
    results = []
    loader = BackgroundLoader(lambda r: 1 / int(r.model_dir), lambda r, m, e: results.append((r.model_dir, m, e)))
    loader.submit(ModelRequest("2"))
    loader.submit(ModelRequest("0"))
    assert loader.wait(10.0) and not loader.busy
    assert results[0] == ("2", 0.5, None)
    assert results[1][0] == "0" and isinstance(results[1][2], ZeroDivisionError)
    loader.close()
    with pytest.raises(RuntimeError, match="closed"):
        loader.submit(ModelRequest("1"))


# ---- one chunk per observation -------------------------------------------------------------------
MS = 1_000_000


def test_a_tick_just_before_the_frame_acts_when_it_arrives_and_no_observation_is_answered_twice():
    """Real time (inputs stamped independently): a tick that finds the newest frame already answered
    publishes nothing and leaves a credit; the next frame is acted on as it arrives, spending it."""
    model = FakeModel("a", history=1)
    loop, _ = make(Models(a=model))
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push")
    observe(loop, 0)
    assert loop.observation_arrived(0) is None            # no tick yet since the episode started
    chunks = [loop.tick(0).chunk]                          # the tick acts on the frame it finds
    tick = loop.tick(100 * MS)                             # no new frame: nothing, not the old frame again
    assert tick.chunk is None and "0.000 s is answered" in tick.skipped
    loop.add_frame("top", 130 * MS, TOP)
    chunks.append(loop.observation_arrived(130 * MS).chunk)  # acted on as the frame arrives
    loop.set_proprio(130 * MS, [1.0, 0.0])
    assert loop.observation_arrived(130 * MS) is None     # the credit is spent: one chunk for that tick
    observe(loop, 160 * MS)
    assert loop.observation_arrived(160 * MS) is None     # a newer frame, but no tick since the last chunk
    chunks.append(loop.tick(200 * MS).chunk)               # the next tick answers it
    assert loop.tick(300 * MS).chunk is None and loop.tick(400 * MS).chunk is None
    observe(loop, 410 * MS)
    chunks.append(loop.observation_arrived(410 * MS).chunk)  # two ticks without a frame: still one chunk
    observe(loop, 420 * MS)
    assert loop.observation_arrived(420 * MS) is None
    assert [c.observation_stamp_ns for c in chunks] == [0, 130 * MS, 160 * MS, 410 * MS]
    assert [c.step for c in chunks] == [0, 1, 2, 3] and len(model.seen) == 4
    assert model.seen[1][1] == [0.0, 0.0]                 # real time: the proprio there was when the frame came


def test_lock_step_answers_each_complete_observation_as_it_arrives():
    """synchronized_inputs, as a lock-step simulator drives it: /clock moves (the tick finds only the
    answered observation), then the frame and the proprio of the next observation arrive, stamped alike."""
    model = FakeModel("a", history=1)
    loop, logs = make(Models(a=model), synchronized_inputs=True)
    loop.load_now(ModelRequest("a"))
    observe(loop, 0, x=9.0)                                # the previous scene, stamped as the next one will be
    assert loop.tick(0).skipped == "no episode running"
    loop.start_episode("e1", "push", max_steps=3)
    assert "waiting for camera/top/image_raw, effector stamped 0.000 s" in loop.tick(0).skipped
    chunks = []
    for step in range(4):
        stamp = step * 100 * MS
        if step:  # the clock moved: the tick finds only the answered observation (then the step limit)
            assert loop.tick(stamp).skipped.endswith("acting on the next one when it arrives" if step < 3
                                                     else "step limit 3 reached")
        loop.add_frame("top", stamp, TOP)
        assert loop.observation_arrived(stamp) is None     # the proprio of that stamp is not in yet
        loop.set_proprio(stamp, [float(step), 0.0])
        arrived = loop.observation_arrived(stamp)
        if arrived is not None:
            chunks.append(arrived.chunk)
    assert [c.observation_stamp_ns for c in chunks] == [0, 100 * MS, 200 * MS]  # max_steps 3: no fourth
    assert [seen[1] for seen in model.seen] == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]  # never the old scene's
    assert loop.tick(400 * MS).skipped == "step limit 3 reached"
    assert said(logs, "info", "episode e1 used its 3 steps")
    loop.end_episode("e1")
    assert said(logs, "info", "episode e1 ended: 3 chunks with a")  # waiting ticks are not failures


def test_independently_stamped_inputs_under_synchronized_inputs_are_named():
    loop, logs = make(Models(a=FakeModel("a")), synchronized_inputs=True)
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push")
    for t in range(1, 5):
        loop.add_frame("top", t * 100 * MS, TOP)
        loop.set_proprio(t * 100 * MS + 3 * MS, [0.0, 0.0])
        assert loop.tick(t * 100 * MS + 5 * MS).chunk is None
    warnings = said(logs, "warning", "no complete observation")
    assert len(warnings) == 1 and "effector at 0.303 s" in warnings[0] and "synchronized_inputs" in warnings[0]


def test_the_first_observation_of_an_episode_needs_no_tick_while_the_clock_stands_still():
    """A lock-step simulator answers the task with an observation and holds /clock until the chunk comes:
    no tick would fire. With synchronized_inputs that observation is answered as it completes; once the
    clock has moved on (time runs freely), the first chunk waits for a tick as any other."""
    loop, _ = make(Models(a=FakeModel("a", history=1)), synchronized_inputs=True)
    loop.load_now(ModelRequest("a"))
    loop.start_episode("e1", "push", now_ns=5 * S)        # no tick ever: the node has just started
    observe(loop, 5 * S)
    assert loop.observation_arrived(5 * S).chunk.observation_stamp_ns == 5 * S
    loop.end_episode("e1")
    loop.start_episode("e2", "push", now_ns=6 * S)
    observe(loop, 6 * S + 30 * MS)
    assert loop.observation_arrived(6 * S + 30 * MS) is None  # the clock moved: not a lock-step answer
    assert loop.tick(6 * S + 100 * MS).chunk.observation_stamp_ns == 6 * S + 30 * MS
    unsynchronized, _ = make(Models(a=FakeModel("a")))
    unsynchronized.load_now(ModelRequest("a"))
    unsynchronized.start_episode("e1", "push", now_ns=5 * S)
    observe(unsynchronized, 5 * S)
    assert unsynchronized.observation_arrived(5 * S) is None  # real time: chunks only for ticks
