"""The policy node's decisions, free of any middleware: when to act, on what, and with which model.

:class:`PolicyLoop` is called by the node on its timer (``tick``) and for every input it receives
(frames, proprio, episode start and end, requests for another model). It decides

- whether to act this tick: only while an episode runs (and it has not used up the task's
  ``max_steps``), only on a complete observation whose every input is at most ``max_observation_age_s``
  old on the node clock, never on an input that was refused (wrong encoding, NaN proprio), and never
  with an action outside the model's action bounds;
- on which observation: each chunk answers one observation, named by the stamp of its newest frame,
  and no observation is answered twice in an episode. A tick that finds nothing new to answer (or, with
  ``synchronized_inputs``, an observation whose inputs have not all arrived) leaves a credit instead:
  the input that completes the next observation (``observation_arrived``) spends it and the loop acts
  at once, not at the next tick. So a tick that fires just before a frame acts when the frame arrives,
  a lock-step simulator (which advances /clock, firing the tick, and only then publishes the next
  observation) is answered as soon as its observation is in, and there is never more than one chunk
  per tick: each chunk is paid for by a tick of its own (at most one credit is kept). One exception,
  with ``synchronized_inputs`` only: an episode's first observation that completes while the node
  clock still reads the time the task came is answered at once (a lock-step simulator answers the
  task with an observation and holds /clock until the chunk comes, so no tick would ever fire);
- which model acts: one episode belongs to one policy version. A new model is loaded on a background
  thread (:class:`BackgroundLoader`; the control timer never waits for it) and becomes active when it is
  loaded if no episode is running, otherwise at the next episode start (or at once, if the request says
  ``at_episode_boundary: false``). Any failure keeps the model that was running.

What to say is decided here too (a stale observation is reported once per episode, a bad input or slow
inference at most every ``REPEAT_S`` of node-clock time), through a ``log(level, text)`` callable. Only
:func:`check_model_dir` and :func:`load_model` touch the filesystem; nothing here imports ROS or torch.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .manifest import MANIFEST, ModelDirError, read_manifest, sha256_file
from .preprocess import Arrival, not_synchronized

NS_PER_S = 1_000_000_000
REPEAT_S = 5.0          # a repeated error or slow-inference warning is said again at most this often (node clock)
INFO, WARNING, ERROR = "info", "warning", "error"

Log = Callable[[str, str], None]


@dataclass(frozen=True)
class LoopSettings:
    """How the loop acts; the node fills it from its parameters."""
    rate_hz: float = 10.0               # control rate: one tick (at most one chunk) per period
    max_observation_age_s: float = 0.2  # an input older than this on the node clock is not acted on
    temperature: float = 1.0            # sampling temperature of the action tokens (> 0)
    greedy: bool = False                # argmax tokens instead of sampling (evaluation)
    seed: int = 0                       # seed of the token sampler
    # The inputs of one observation carry one stamp (the lock-step simulator's): act only once every
    # camera and the proprio have arrived with the newest frame's stamp, all of them in this episode.
    synchronized_inputs: bool = False

    def __post_init__(self) -> None:
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"rate_hz must be a positive number, got {self.rate_hz!r}")
        if not self.max_observation_age_s > 0:
            raise ValueError(f"max_observation_age_s must be > 0, got {self.max_observation_age_s!r}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (or set greedy), got {self.temperature!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")

    @property
    def period_ms(self) -> float:
        return 1e3 / self.rate_hz


@dataclass(frozen=True)
class ModelRequest:
    """Switch to the model in ``model_dir`` (from the model_dir parameter, the topic or the service)."""
    model_dir: str
    version: str = ""                 # expected version name; empty: whatever the manifest says
    manifest_sha256: str = ""         # expected sha256 (hex) of MODEL_DIR/manifest.json; empty: not checked
    at_episode_boundary: bool = True  # False: switch as soon as loaded, even in the middle of an episode
    embodiment: str = ""              # embodiment the sender says it is for; empty: not checked
    source: str = ""                  # who asked, for log messages ("service load_policy")

    def describe(self) -> str:
        return f"{self.version or 'model'} from {self.model_dir}" + (f" via {self.source}" if self.source else "")


class Model(Protocol):
    """What the loop needs of a model: :class:`efm_policy.runtime.PolicyRuntime` has it."""
    version: str
    config: Any        # .cameras, .history, .proprio_dim, .embodiment
    manifest: Any      # .tokenizers.action: .low, .high, .horizon, .action_dim

    def act(self, frames: Mapping[str, Sequence[np.ndarray]], proprio: Sequence[float], instruction: str,
            temperature: float = 1.0, greedy: bool = False, rng: np.random.Generator | None = None) -> Any: ...


@dataclass(frozen=True)
class Chunk:
    """One action chunk to publish (the fields of efm_msgs/ActionChunk but the header and latency)."""
    episode_id: str
    step: int
    horizon: int
    action_dim: int
    values: list[float]           # horizon * action_dim, step-major, within the tokenizer's [low, high]
    tokens: list[int]
    log_prob: float
    policy_version: str
    inference_ms: float
    observation_stamp_ns: int     # stamp of the newest frame the chunk answers


@dataclass(frozen=True)
class Tick:
    chunk: Chunk | None = None
    skipped: str = ""             # why nothing is published this tick; empty when a chunk is


# ---- model directories ---------------------------------------------------------------------------
def check_model_dir(request: ModelRequest, expected_embodiment: str = "") -> str:
    """The cheap checks, done before a load is accepted: the manifest exists, matches the sha256 and
    version the sender named, and is for this robot's embodiment. Returns the version name; raises
    ModelDirError naming the problem. Every file's sha256 is verified later, by the load itself."""
    directory = Path(request.model_dir)
    if not request.model_dir:
        raise ModelDirError("no model directory given (model_dir is empty)")
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: no such model directory")
    if request.manifest_sha256:
        path = directory / MANIFEST
        if not path.is_file():
            raise ModelDirError(f"{directory}: no {MANIFEST} (is this a directory written by `efm export`?)")
        actual = sha256_file(path)
        if actual != request.manifest_sha256.strip().lower():
            raise ModelDirError(f"{path}: sha256 is {actual}, but the request says {request.manifest_sha256} "
                                "(a different or half-copied model)")
    manifest = read_manifest(directory, expected_embodiment or None, verify=False)
    if request.embodiment and request.embodiment != manifest.embodiment:
        raise ModelDirError(f"{directory}: a model for {manifest.embodiment!r}, but the request says "
                            f"{request.embodiment!r}")
    if request.version and request.version != manifest.version:
        raise ModelDirError(f"{directory}: holds version {manifest.version!r}, but the request names "
                            f"{request.version!r}")
    return manifest.version


def load_model(request: ModelRequest, expected_embodiment: str = "", providers: Sequence[str] | None = None,
               log: Callable[[str], None] = lambda _: None) -> Model:
    """Check, then load with ONNX Runtime (which verifies every file's sha256): seconds, off the timer."""
    from .runtime import PolicyRuntime

    check_model_dir(request, expected_embodiment)
    return PolicyRuntime(request.model_dir, providers, expected_embodiment or None, log)


# ---- background loading ---------------------------------------------------------------------------
class BackgroundLoader:
    """Loads models one at a time on a worker thread; ``done(request, model, error)`` is called there.

    ``wait`` blocks until every submitted load has finished (tests, shutdown); ``close`` stops taking
    work without waiting for a load in progress (its result is dropped).
    """

    def __init__(self, load: Callable[[ModelRequest], Model],
                 done: Callable[[ModelRequest, Model | None, BaseException | None], None]) -> None:
        self._load, self._done = load, done
        # one worker: loads run in the order they were asked for, never two at once
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="efm-policy-loader")
        self._futures: list[Future] = []
        self._closed = False

    def submit(self, request: ModelRequest) -> None:
        if self._closed:
            raise RuntimeError("the model loader was closed")
        self._futures = [f for f in self._futures if not f.done()] + [self._executor.submit(self._run, request)]

    def _run(self, request: ModelRequest) -> None:
        model, error = None, None
        try:
            model = self._load(request)
        except Exception as exc:  # any failure keeps the running model; the loop reports it
            error = exc
        if not self._closed:
            self._done(request, model, error)

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._futures)

    def wait(self, timeout_s: float | None = None) -> bool:
        """True once every submitted load has finished (False if ``timeout_s`` passed first)."""
        return not futures_wait(list(self._futures), timeout_s).not_done

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


# ---- observations ---------------------------------------------------------------------------------
@dataclass
class _Episode:
    episode_id: str
    instruction: str
    version: str
    max_steps: int = 0                # the task's step limit; 0: none
    first_seq: int = 0                # inputs numbered up to this arrived before the episode started
    started_ns: int | None = None     # node clock at the start (synchronized_inputs only)
    steps: int = 0
    skipped: int = 0
    answered_ns: int | None = None    # stamp of the observation the model last ran on
    incomplete_ticks: int = 0         # ticks since the last chunk that found the observation incomplete
    paused: bool = False
    warned_stale: bool = False
    warned_no_model: bool = False
    warned_limit: bool = False
    warned_incomplete: bool = False


@dataclass
class _Throttle:
    interval_ns: int
    last: dict[str, tuple[str, int]] = field(default_factory=dict)

    def allow(self, key: str, text: str, now_ns: int) -> bool:
        """Say ``text`` now if it differs from what ``key`` said last, or ``interval_ns`` has passed."""
        previous = self.last.get(key)
        if previous is not None and previous[0] == text and now_ns - previous[1] < self.interval_ns:
            return False
        self.last[key] = (text, now_ns)
        return True


class PolicyLoop:
    """Decides each tick whether to act, on which observation and with which model (see the module doc).

    Every method but the loader's callback runs on one thread (the node's executor)."""

    def __init__(self, settings: LoopSettings, load: Callable[[ModelRequest, str], Model] = load_model,
                 check: Callable[[ModelRequest, str], str] = check_model_dir, log: Log = lambda level, text: None,
                 expected_embodiment: str = "", proprio_label: str = "proprio") -> None:
        self.settings = settings
        self._load, self._check, self._log = load, check, log
        self._embodiment = expected_embodiment      # fixed by the first model when empty
        self._proprio_label = proprio_label
        self._rng = np.random.default_rng(settings.seed)
        self._active: Model | None = None
        self._pending: tuple[ModelRequest, Model] | None = None
        self._loading: dict[str, ModelRequest] = {}  # version -> request submitted, not yet arrived
        self._arrivals: list[tuple[ModelRequest, Model | None, BaseException | None]] = []
        self._arrivals_lock = threading.Lock()
        self._loader = BackgroundLoader(lambda request: self._load(request, self._embodiment), self._arrived)
        self._frames: dict[str, deque] = {}        # camera -> newest frames, oldest first
        self._history = 1                           # frames kept per camera: the most any model needs
        self._frame_input: dict[str, Arrival] = {}
        self._proprio: list[float] | None = None
        self._proprio_input: Arrival | None = None
        self._seq = 0                               # inputs received so far
        self._credit = False                        # a tick found nothing to answer since the last chunk
        self._episode: _Episode | None = None
        self._throttle = _Throttle(int(REPEAT_S * NS_PER_S))

    # ---- models ------------------------------------------------------------------------------
    @property
    def active_version(self) -> str:
        return self._active.version if self._active is not None else ""

    @property
    def pending_version(self) -> str:
        return self._pending[1].version if self._pending is not None else ""

    @property
    def active_model(self) -> Model | None:
        return self._active

    @property
    def embodiment(self) -> str:
        return self._embodiment

    def cameras(self) -> list[str]:
        """Cameras the active and the pending model look at (the node subscribes to each)."""
        models = [m for m in (self._active, self._pending[1] if self._pending else None) if m is not None]
        return list(dict.fromkeys(c for m in models for c in m.config.cameras))

    def load_now(self, request: ModelRequest) -> str:
        """Load and activate synchronously (the node's start-up model); raises ModelDirError on failure."""
        self._check(request, self._embodiment)
        model = self._load(request, self._embodiment)
        self._activate(request, model)
        return model.version

    def request_model(self, request: ModelRequest) -> tuple[bool, str]:
        """Start loading ``request`` in the background. Returns (accepted, message): accepted means the
        cheap checks passed and the load started (or the version is already active or on its way)."""
        self.poll()
        try:
            version = self._check(request, self._embodiment)
        except (ModelDirError, OSError, ValueError) as exc:
            message = f"refused {request.describe()}: {exc}; keeping {self.active_version or 'no model'}"
            self._log(ERROR, message)
            return False, message
        if version == self.active_version:
            return True, f"{version} is already the active policy"
        if version == self.pending_version or version in self._loading:
            return True, f"{version} is already loading or waiting for the next episode"
        self._loading[version] = request
        self._loader.submit(request)
        waits = request.at_episode_boundary and self._episode is not None and self._active is not None
        when = "at the next episode start" if waits else "as soon as it is loaded"
        message = (f"loading {version} from {request.model_dir} in the background; it becomes active {when} "
                   f"(active now: {self.active_version or 'none'})")
        self._log(INFO, message)
        return True, message

    def wait_for_loads(self, timeout_s: float | None = None) -> bool:
        """Block until every background load has finished (its result is taken at the next poll or tick)."""
        return self._loader.wait(timeout_s)

    def _arrived(self, request: ModelRequest, model: Model | None, error: BaseException | None) -> None:
        with self._arrivals_lock:  # on the loader thread: hand over, decide on the executor thread
            self._arrivals.append((request, model, error))

    def poll(self) -> None:
        """Take finished loads: report failures, activate or schedule the loaded models."""
        with self._arrivals_lock:
            arrivals, self._arrivals = self._arrivals, []
        for request, model, error in arrivals:
            self._loading = {v: r for v, r in self._loading.items() if r is not request}
            if error is not None:
                self._log(ERROR, f"could not load {request.describe()}: {_describe(error)}; "
                                 f"keeping {self.active_version or 'no model'}")
            elif self._embodiment and model.config.embodiment != self._embodiment:
                self._log(ERROR, f"refused {request.describe()}: a model for {model.config.embodiment!r}, but "
                                 f"this robot is {self._embodiment!r}; keeping {self.active_version or 'no model'}")
            elif model.version == self.active_version:
                continue
            elif self._episode is None or not request.at_episode_boundary or self._active is None:
                self._activate(request, model)  # no model yet: acting from now on keeps one version per episode
            else:
                if self._pending is not None:
                    self._log(INFO, f"{model.version} replaces {self.pending_version} as the next policy")
                self._pending = (request, model)
                self._keep_history(model)
                self._log(INFO, f"{model.version} is loaded; it becomes active when the next episode starts "
                                f"(episode {self._episode.episode_id} runs with {self._episode.version})")

    def _activate(self, request: ModelRequest, model: Model) -> None:
        previous = self.active_version
        self._active, self._pending = model, None
        if not self._embodiment:
            self._embodiment = model.config.embodiment
        self._keep_history(model)
        episode = self._episode
        if episode is not None:
            if previous:
                self._log(WARNING, f"switched from {previous} to {model.version} in the middle of episode "
                                   f"{episode.episode_id} (at_episode_boundary is false)")
            episode.version = model.version
        provider = getattr(model, "provider", "")
        self._log(INFO, f"acting with {model.version}" + (f" on {provider}" if provider else "")
                  + (f" instead of {previous}" if previous else "") + f" ({request.describe()})")

    def _keep_history(self, model: Model) -> None:
        if model.config.history > self._history:
            self._history = model.config.history
            self._frames = {c: deque(f, maxlen=self._history) for c, f in self._frames.items()}

    # ---- episodes ----------------------------------------------------------------------------
    @property
    def episode_id(self) -> str:
        return self._episode.episode_id if self._episode is not None else ""

    def start_episode(self, episode_id: str, instruction: str, max_steps: int = 0, now_ns: int | None = None) -> None:
        """A task arrived: the pending model (if any) becomes active, then the episode starts with it.
        ``max_steps`` (the task's limit; 0: none): no more chunks than that in this episode. ``now_ns``
        (node clock): with synchronized_inputs, an observation that completes before the clock moves
        on from it is answered without waiting for a tick (a lock-step simulator answers the task with
        an observation and holds /clock until the chunk comes)."""
        self.poll()
        if self._episode is not None:
            self._log(WARNING, f"task {episode_id} arrived while episode {self._episode.episode_id} was running; "
                               "starting the new one")
            self._finish_episode("replaced by the next task")
        if self._pending is not None:
            self._activate(*self._pending)
        for frames in self._frames.values():  # as in training: an episode's history starts at its first frame
            while len(frames) > 1:
                frames.popleft()
        self._episode = _Episode(episode_id, instruction, self.active_version, max_steps=max(0, int(max_steps)),
                                 first_seq=self._seq,
                                 started_ns=now_ns if self.settings.synchronized_inputs else None)
        self._log(INFO, f"episode {episode_id} started with {self.active_version or 'no model'}: {instruction!r}")

    def end_episode(self, episode_id: str, outcome: str = "ended") -> None:
        """A terminal episode status: stop acting; a pending model becomes active now."""
        if self._episode is None or self._episode.episode_id != episode_id:
            return
        self._finish_episode(outcome)
        self.poll()
        if self._pending is not None:
            self._activate(*self._pending)

    def set_paused(self, episode_id: str, paused: bool) -> None:
        if self._episode is not None and self._episode.episode_id == episode_id:
            self._episode.paused = paused

    def _finish_episode(self, outcome: str) -> None:
        episode, self._episode = self._episode, None
        skipped = f", {episode.skipped} ticks without acting" if episode.skipped else ""
        self._log(INFO, f"episode {episode.episode_id} {outcome}: {episode.steps} chunks with "
                        f"{episode.version or 'no model'}{skipped}")

    # ---- observations ------------------------------------------------------------------------
    # After each of these the node calls ``observation_arrived``: the input may complete an observation.
    def add_frame(self, camera: str, stamp_ns: int, image: np.ndarray) -> None:
        frames = self._frames.setdefault(camera, deque(maxlen=self._history))
        frames.append(image)
        self._frame_input[camera] = self._arrival(stamp_ns)

    def reject_frame(self, camera: str, stamp_ns: int, problem: str) -> None:
        """A frame that could not be used: no action until a good frame from this camera arrives."""
        self._frame_input[camera] = self._arrival(stamp_ns, problem)

    def set_proprio(self, stamp_ns: int, values: Sequence[float]) -> None:
        self._proprio = [float(v) for v in values]
        self._proprio_input = self._arrival(stamp_ns)

    def reject_proprio(self, stamp_ns: int, problem: str) -> None:
        self._proprio_input = self._arrival(stamp_ns, problem)

    def _arrival(self, stamp_ns: int, problem: str = "") -> Arrival:
        self._seq += 1
        return Arrival(stamp_ns, self._seq, problem)

    def observation_arrived(self, now_ns: int) -> Tick | None:
        """Called after every input: a chunk (or why not) when a tick since the last chunk found nothing
        to answer and this input completes a new observation; None when there is nothing to do now."""
        self.poll()
        episode, model = self._episode, self._active
        if episode is None or episode.paused or model is None or self._at_limit(episode):
            return None
        first = episode.answered_ns is None and episode.started_ns is not None and episode.started_ns == now_ns
        if not (self._credit or first):
            return None
        if self._missing(model) or self._waiting_for(model, episode)[0]:
            return None
        self._credit = False  # the tick that found nothing is spent on this observation, acted on or not
        bad, stale = self._check_observation(model, now_ns)
        if bad or stale:
            self._report(episode, bad, stale, now_ns)
            return Tick(skipped=bad or stale)
        return self._act(episode, model, now_ns)

    # ---- the tick ----------------------------------------------------------------------------
    def tick(self, now_ns: int) -> Tick:
        """One control period: a chunk to publish, or why there is none."""
        self.poll()
        episode, model = self._episode, self._active
        self._credit = True  # spent below if this tick acts; otherwise the next complete observation may
        if episode is None:
            return Tick(skipped="no episode running")
        if episode.paused:
            return Tick(skipped="episode paused")
        if model is None:
            if not episode.warned_no_model:
                episode.warned_no_model = True
                self._log(WARNING, f"episode {episode.episode_id} runs but no model is loaded: not acting "
                                   "(set model_dir, or send policy_version or load_policy)")
            return self._skip(episode, "no model loaded")
        if self._at_limit(episode):
            if not episode.warned_limit:
                episode.warned_limit = True
                self._log(INFO, f"episode {episode.episode_id} used its {episode.max_steps} steps: not acting "
                                "until it ends")
            return Tick(skipped=f"step limit {episode.max_steps} reached")
        bad, stale = self._check_observation(model, now_ns)
        if bad or stale:
            self._report(episode, bad, stale, now_ns)
            return self._skip(episode, bad or stale)
        waiting, behind = self._waiting_for(model, episode)
        if waiting:  # not a failure: the observation that completes it is acted on when it arrives
            if behind:
                self._warn_if_never_complete(episode, model, behind)
            return Tick(skipped=waiting)
        self._credit = False
        return self._act(episode, model, now_ns)

    def _at_limit(self, episode: _Episode) -> bool:
        return 0 < episode.max_steps <= episode.steps

    def _report(self, episode: _Episode, bad: str, stale: str, now_ns: int) -> None:
        if bad:
            if self._throttle.allow("bad", bad.split(":")[0], now_ns):
                self._log(ERROR, f"not acting on a refused input: {bad}")
        elif not episode.warned_stale:
            episode.warned_stale = True
            self._log(WARNING, f"observation too old, not acting: {stale} (said once per episode)")

    def _inputs(self, model: Model) -> list[tuple[str, Arrival | None]]:
        inputs = [(f"camera/{c}/image_raw", self._frame_input.get(c)) for c in model.config.cameras]
        inputs.append((self._proprio_label, self._proprio_input))
        return inputs

    def _missing(self, model: Model) -> bool:
        return any(seen is None for _, seen in self._inputs(model))

    def _observation_stamp(self, model: Model) -> int:
        return max(self._frame_input[c].stamp_ns for c in model.config.cameras)

    def _waiting_for(self, model: Model, episode: _Episode) -> tuple[str, list[tuple[str, Arrival]]]:
        """Why the newest observation is not one to answer now (empty: it is), and the inputs it waits
        for: already answered in this episode, or (synchronized_inputs) not all of its inputs are in
        yet (each stamped as the newest frame and received since the episode started: a simulator may
        stamp the first observation of a new scene as the last one of the previous scene)."""
        stamp = self._observation_stamp(model)
        if stamp == episode.answered_ns:
            return f"the observation at {stamp / NS_PER_S:.3f} s is answered; acting on the next one when it arrives", []
        if not self.settings.synchronized_inputs:
            return "", []
        behind = not_synchronized(self._inputs(model), stamp, episode.first_seq)
        if not behind:
            return "", []
        names = ", ".join(name for name, _ in behind)
        return f"waiting for {names} stamped {stamp / NS_PER_S:.3f} s (synchronized_inputs)", behind

    def _warn_if_never_complete(self, episode: _Episode, model: Model, behind: list[tuple[str, Arrival]]) -> None:
        """Inputs stamped independently never make a synchronized observation: say so, once per episode."""
        episode.incomplete_ticks += 1
        if episode.incomplete_ticks < 3 or episode.warned_incomplete:
            return
        episode.warned_incomplete = True
        at = ", ".join(f"{name} at {seen.stamp_ns / NS_PER_S:.3f} s" for name, seen in behind)
        self._log(WARNING, f"{episode.incomplete_ticks} ticks since the last chunk found no complete observation: "
                           f"the newest frame is stamped {self._observation_stamp(model) / NS_PER_S:.3f} s, {at}; "
                           "synchronized_inputs waits for every input with the newest frame's stamp (set it "
                           "false if the inputs are stamped independently) (said once per episode)")

    def _check_observation(self, model: Model, now_ns: int) -> tuple[str, str]:
        """(refused input, stale or missing input); empty strings when the observation is usable."""
        limit_ns = int(self.settings.max_observation_age_s * NS_PER_S)
        bad, stale = [], []
        for name, seen in self._inputs(model):
            if seen is None:
                stale.append(f"no {name} message yet")
            elif seen.problem:
                bad.append(f"{name}: {seen.problem}")
            elif now_ns - seen.stamp_ns > limit_ns:
                stale.append(f"{name} is {(now_ns - seen.stamp_ns) / NS_PER_S:.3f} s old")
        if not bad and self._proprio is not None:
            proprio = self._proprio
            if len(proprio) != model.config.proprio_dim:
                bad.append(f"{self._proprio_label}: {len(proprio)} values, but {model.version} takes "
                           f"{model.config.proprio_dim}")
            elif not all(math.isfinite(v) for v in proprio):
                bad.append(f"{self._proprio_label}: non-finite values {proprio}")
        limit = f" (limit {self.settings.max_observation_age_s:.3f} s)" if stale else ""
        return "; ".join(bad), ", ".join(stale) + limit

    def _act(self, episode: _Episode, model: Model, now_ns: int) -> Tick:
        """Run the model on the newest observation; it counts as answered whatever comes of it."""
        observation_stamp_ns = self._observation_stamp(model)
        episode.answered_ns, episode.incomplete_ticks = observation_stamp_ns, 0
        history = model.config.history
        frames = {c: list(self._frames[c])[-history:] for c in model.config.cameras}
        try:
            sample = model.act(frames, self._proprio, episode.instruction, temperature=self.settings.temperature,
                               greedy=self.settings.greedy, rng=self._rng)
        except ValueError as exc:  # ObservationError: wrong image shape, unknown instruction, bad logits
            if self._throttle.allow("act", str(exc), now_ns):
                self._log(ERROR, f"{model.version} refused the observation: {exc}")
            return self._skip(episode, str(exc))
        bounds = model.manifest.tokenizers.action
        values = np.asarray(sample.values, dtype=np.float64)
        tokens = np.asarray(sample.tokens)
        expected = (bounds.horizon, bounds.action_dim)
        problem = ""
        if values.size != expected[0] * expected[1] or tokens.size != values.size:
            problem = f"{values.size} values and {tokens.size} tokens, expected {expected[0]} x {expected[1]}"
        elif not np.all(np.isfinite(values)):
            problem = f"non-finite action values {values.ravel().tolist()}"
        if problem:
            if self._throttle.allow("action", problem, now_ns):
                self._log(ERROR, f"{model.version} produced an unusable chunk, not publishing it: {problem}")
            return self._skip(episode, problem)
        values = np.clip(values.reshape(expected), np.asarray(bounds.low), np.asarray(bounds.high))
        inference_ms = float(sample.inference_ms)
        if inference_ms > self.settings.period_ms and self._throttle.allow("slow", "slow", now_ns):
            self._log(WARNING, f"inference took {inference_ms:.1f} ms, longer than the {self.settings.period_ms:.1f} ms "
                               f"control period at {self.settings.rate_hz:g} Hz ({model.version})")
        chunk = Chunk(
            episode_id=episode.episode_id, step=episode.steps, horizon=expected[0], action_dim=expected[1],
            values=[float(v) for v in values.ravel()], tokens=[int(t) for t in tokens.ravel()],
            log_prob=float(sample.log_prob), policy_version=model.version, inference_ms=inference_ms,
            observation_stamp_ns=observation_stamp_ns)
        episode.steps += 1
        return Tick(chunk=chunk)

    def _skip(self, episode: _Episode, why: str) -> Tick:
        episode.skipped += 1
        return Tick(skipped=why)

    def close(self) -> None:
        self._loader.close()


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, (ModelDirError, OSError)) else f"{type(error).__name__}: {error}"
