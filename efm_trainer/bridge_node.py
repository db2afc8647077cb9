"""Trainer bridge: records every episode to the spool, uploads it to the learner, follows its policy versions.

Recording is :mod:`efm_trainer.recording` (the same core as ``episode_recorder``) writing into
``spool_dir``; uploads are :mod:`efm_trainer.uploader`, policy downloads :mod:`efm_trainer.policy_sync`,
the spool :mod:`efm_trainer.spool` (docs/stage2_contract.md fixes the layout and the HTTP API).
Network I/O runs on two worker threads (uploads; version polls and downloads), never in executor
callbacks; a verified new version comes back to the executor through a queue that a wall timer
drains: the bridge publishes it on ``policy_version`` (latched) and calls ``load_policy`` with
``at_episode_boundary`` (the policy node swaps between episodes).

A late human label (the terminal status published again with ``human_label`` set) is written into
the episode's metadata.yaml before upload: a finished episode is held back from upload until the next
episode starts or ``label_grace_s`` has passed. A label that comes while or after the episode is sent
is logged as a warning and not sent (the learner keeps the detector's outcome).

Before any upload, ``GET /v1/spec`` must match ``model_dir``'s manifest (embodiment, tokenizers,
input); a mismatch, a wrong token (401) or a 409 spec answer stops uploads with an error that says
what to fix, and nothing leaves the spool. Counters (uploaded, duplicates, refused, retries, MB/s,
spool size) are logged every ``stats_period_s``; spool warnings (disk low, over budget) when they start.

Topics (robot namespace):
  subscribes task, episode, action, reward       efm_msgs Task / EpisodeStatus / ActionChunk / StepReward
             camera/<name>/image_raw             sensor_msgs/Image rgb8 (each of ``cameras``), sensor QoS
             effector | joint_states             proprio (``proprio_topic``), sensor QoS
  publishes  policy_version                      efm_msgs/PolicyVersion, latched: a verified new version
  calls      load_policy                         efm_msgs/srv/LoadPolicy (when a policy node offers it)
Parameters: learner_url ("http://127.0.0.1:8765"), token_file (preferred: a file holding the token,
  read at start) or token, spool_dir, models_dir, model_dir (required: the robot's starting model),
  cameras (["top"]), proprio_topic ("effector"), jpeg_quality (90), image_format (png: lossless),
  record_ground_truth (false; sim only), spool_max_bytes (20 GB), min_free_bytes (2 GB), poll_s (10), retry_initial_s (1), retry_max_s (60), retry_jitter (0.5),
  label_grace_s (60), stats_period_s (60).
Run: ``ros2 run efm trainer_bridge --ros-args -p spool_dir:=/data/spool -p models_dir:=/data/models
-p model_dir:=/data/models/sft-0000 -p token_file:=/etc/efm/learner_token``.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path

from efm_runtime import COMMANDS, LATCHED, Node, NodeOptions, ParameterError, get_message, get_service, run_node

from .policy_sync import NewModel, PolicySync
from .recorder_node import declare_recording_parameters, node_log, subscribe_recording
from .recording import EpisodeRecording
from .spool import Spool
from .uploader import LearnerClient, RetrySettings, Uploader, model_spec

Task = get_message("efm_msgs/msg/Task")
PolicyVersion = get_message("efm_msgs/msg/PolicyVersion")
LoadPolicy = get_service("efm_msgs/srv/LoadPolicy")

VERSION_TOPIC = "policy_version"
LOAD_SERVICE = "load_policy"
HOUSEKEEPING_S = 0.2   # how often the executor takes new versions and releases held episodes


class TrainerBridge(Node):
    default_name = "trainer_bridge"

    def __init__(self, options: NodeOptions | None = None) -> None:
        super().__init__(self.default_name, options)
        p = self.declare_parameter
        learner_url = p("learner_url", "http://127.0.0.1:8765", description="base URL of the learner service").value
        token = p("token", "", description="learner bearer token (prefer token_file)").value
        token_file = p("token_file", "", description="file holding the learner token, read at start").value
        spool_dir = p("spool_dir", type="string", description="episodes waiting for upload (robot disk)").value
        models_dir = p("models_dir", type="string", description="where downloaded policy versions go").value
        model_dir = p("model_dir", type="string", description="the robot's starting model (spec to compare)").value
        # PNG: the learner recomputes log pi from the stored frames, and JPEG q90 moves it by ~0.3 nats
        # from what the robot sampled (bench/RESULTS_stage2.md); lossless frames make the two agree exactly.
        recording_params = declare_recording_parameters(self, image_format="png")
        max_bytes = p("spool_max_bytes", 20 << 30, min=1, description="spool byte budget").value
        min_free = p("min_free_bytes", 2 << 30, min=0, description="warn below this free disk space").value
        poll_s = p("poll_s", 10.0, min=0.01, description="seconds between version polls").value
        retry = RetrySettings(
            initial_s=p("retry_initial_s", 1.0, min=0.001, description="first upload retry delay").value,
            max_s=p("retry_max_s", 60.0, min=0.001, description="longest upload retry delay").value,
            jitter=p("retry_jitter", 0.5, min=0.0, max=0.99, description="random fraction taken off a delay").value)
        self._label_grace_s = p("label_grace_s", 60.0, min=0.0,
                                description="hold a finished episode this long for a human label").value
        self._stats_period_s = p("stats_period_s", 60.0, min=0.1, description="seconds between counter logs").value

        token = _read_token(token, token_file)
        if not Path(model_dir).is_dir():
            raise ParameterError(f"parameter 'model_dir': {model_dir} is not a directory (the robot's model)")
        robot = self.get_namespace().strip("/")
        log = node_log(self)
        self.spool = Spool(spool_dir, max_bytes, min_free)
        removed = self.spool.remove_partials()
        if removed:
            self.get_logger().warning(f"removed unfinished recordings of a previous run: {', '.join(removed)}")
        try:
            self.uploader = Uploader(self.spool, LearnerClient(learner_url, token), model_spec(model_dir), robot,
                                     retry, log, is_held=self._is_held)
            self.sync = PolicySync(LearnerClient(learner_url, token), models_dir, model_dir, log)
        except (ValueError, OSError, KeyError) as exc:
            raise ParameterError(f"node {self.get_fully_qualified_name()}: {exc}") from None
        self.recording = EpisodeRecording(spool_dir, robot, recording_params.jpeg_quality, log,
                                          image_format=recording_params.image_format,
                                          on_finished=self._on_finished,
                                          on_labelled=self._on_labelled, label_lock=self.uploader.lock,
                                          on_closing=self._hold)

        self._held: dict[str, int] = {}          # episode id -> node time (ns) it finished
        self._held_lock = threading.Lock()
        self._models: queue.Queue[NewModel] = queue.Queue()
        self._problems: dict[str, str] = {}
        self._report = None
        self._stop, self._wake = threading.Event(), threading.Event()
        self._version_pub = self.create_publisher(PolicyVersion, VERSION_TOPIC, LATCHED)
        self._load_client = self.create_client(LoadPolicy, LOAD_SERVICE)
        subscribe_recording(self, self.recording, recording_params)
        # a new task also releases the previous episode: its labelling window is over
        self.create_subscription(Task, "task", lambda _msg: self._release_all(), COMMANDS)
        self.create_wall_timer(HOUSEKEEPING_S, self._housekeeping)
        self.create_wall_timer(self._stats_period_s, self._log_stats)
        self._threads = [
            threading.Thread(target=self.uploader.run, args=(self._stop, self._wake, poll_s, self._after_pass),
                             name="bridge-upload", daemon=True),
            threading.Thread(target=self.sync.run, args=(self._stop, self._models.put, poll_s),
                             name="bridge-policy-sync", daemon=True)]
        for thread in self._threads:
            thread.start()
        self.get_logger().info(f"trainer bridge: learner {learner_url}, spool {spool_dir} "
                               f"({len(self.spool.pending())} episodes waiting), model {self.sync.version}")

    # ---- episodes -------------------------------------------------------------------------------
    def _hold(self, episode_id: str) -> None:
        """Before the episode appears in the spool, so the upload thread never sees it unheld."""
        with self._held_lock:
            self._held[episode_id] = self.get_clock().now().nanoseconds

    def _on_finished(self, episode_id: str, path: Path) -> None:
        if self._label_grace_s <= 0:
            self._release_all()

    def _is_held(self, episode_id: str) -> bool:
        with self._held_lock:
            return episode_id in self._held

    def _release_all(self) -> None:
        with self._held_lock:
            released = bool(self._held)
            self._held.clear()
        if released:
            self._wake.set()

    def _on_labelled(self, episode_id: str, label: int) -> bool:
        if self.uploader.claim_for_label(episode_id):
            return True
        self.get_logger().warning(f"human label {label} for episode {episode_id} came while it was being "
                                  "uploaded; the learner keeps the detector's outcome (raise label_grace_s)")
        return False

    # ---- executor-side housekeeping ---------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = self.get_clock().now().nanoseconds
        with self._held_lock:
            expired = [e for e, t in self._held.items() if now - t >= self._label_grace_s * 1e9]
            for episode_id in expired:
                del self._held[episode_id]
        if expired:
            self._wake.set()
        while True:
            try:
                model = self._models.get_nowait()
            except queue.Empty:
                break
            self._hand_over(model)
        report = self._report
        if report is not None:
            for key, text in report.problems.items():
                if key not in self._problems:
                    self.get_logger().warning(text)
            for key in set(self._problems) - set(report.problems):
                self.get_logger().info(f"spool: {key.replace('_', ' ')} resolved")
            self._problems = dict(report.problems)

    def _hand_over(self, model: NewModel) -> None:
        msg = PolicyVersion(version=model.version, model_dir=str(model.model_dir),
                            manifest_sha256=model.manifest_sha256, embodiment=model.embodiment,
                            learner_step=model.learner_step, at_episode_boundary=True)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._version_pub.publish(msg)
        self.get_logger().info(f"new policy version {model.version} ready in {model.model_dir}; published on "
                               f"{VERSION_TOPIC}")
        if not self._load_client.service_is_ready():
            return  # the latched message reaches a policy node that starts later
        request = LoadPolicy.Request(version=model.version, model_dir=str(model.model_dir),
                                     manifest_sha256=model.manifest_sha256, at_episode_boundary=True)
        self._load_client.call_async(request).add_done_callback(
            lambda future: self._load_answered(model.version, future))

    def _load_answered(self, version: str, future) -> None:
        try:
            response = future.result()
        except Exception as exc:  # the policy node went away between the check and the call
            self.get_logger().error(f"{LOAD_SERVICE} for {version} failed: {type(exc).__name__}: {exc}")
            return
        log = self.get_logger().info if response.accepted else self.get_logger().error
        log(f"{LOAD_SERVICE} {version}: accepted={response.accepted}, {response.message} "
            f"(active now: {response.active_version or 'none'})")

    def _after_pass(self) -> None:
        self._report = self.spool.check()  # on the upload thread: sizing the spool reads the disk

    def _log_stats(self) -> None:
        s, report = self.uploader.stats, self._report
        spool = (f"; spool: {report.pending} waiting ({report.pending_bytes / 1e6:.1f} MB), "
                 f"{report.free_bytes / 1e9:.1f} GB free") if report is not None else ""
        state = f"; STOPPED: {self.uploader.stopped}" if self.uploader.stopped else ""
        self.get_logger().info(
            f"uploads: {s.uploaded} uploaded, {s.duplicates} duplicates, {s.refused} refused, {s.retries} retries, "
            f"{s.bytes_sent / 1e6:.1f} MB at {s.bytes_per_s / 1e6:.1f} MB/s{spool}; policy {self.sync.version}{state}")

    def destroy_node(self) -> None:
        if hasattr(self, "_threads"):  # fully built (build_node also destroys a half-built node)
            self._stop.set()
            self._wake.set()
            for thread in self._threads:
                thread.join(timeout=10.0)  # an upload in flight ends with its request timeout at worst
            self.recording.discard()
            self.uploader.client.close()
            self.sync.client.close()
        super().destroy_node()


def _read_token(token: str, token_file: str) -> str:
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ParameterError(f"parameter 'token_file': cannot read {token_file} ({exc.strerror})") from None
        if not token:
            raise ParameterError(f"parameter 'token_file': {token_file} is empty; put the learner's token in it")
    if not token:
        raise ParameterError("no learner token: set parameter 'token_file' (a file holding the token, preferred) "
                             "or 'token'")
    return token


def main(args=None):
    return run_node(TrainerBridge, args)
