"""Uploads spooled episodes to the learner (``PUT /v1/episodes/{id}``, docs/stage2_contract.md).

One episode at a time, oldest first: the folder is tarred (uncompressed, ``<id>/...``, byte-identical
on every try so a re-upload has the same sha256) into memory or, past ``memory_limit``, an unnamed
temporary file; the body goes out with ``X-Content-SHA256``, ``X-Robot`` and ``X-Policy-Version``.

What the answer does to the episode (it leaves the queue only on an acknowledgement):
  201 accepted, 200 duplicate, 200 stored   -> ``.uploaded/`` (a re-upload after a crash gets duplicate)
  400 sha256 mismatch (truncated in transit) -> stays; retried (``.refused/`` after ``max_sha_retries``)
  400 other, 409 same id other content, 4xx  -> ``.refused/<id>/reason.txt``
  401 wrong token, 409 spec mismatch,        -> nothing moved; uploading stops with an error that says
  404/405 (not a learner at that URL)           what to fix (restart the bridge after fixing it)
  5xx, 408, 429, no connection, timeout      -> stays; retried with capped exponential backoff + jitter

Kill-safety: nothing is moved before the answer, so a bridge killed mid-upload finds the episode in
the spool on restart and sends it again; the learner's idempotency (same id and sha256 -> duplicate)
makes it arrive exactly once. The learner being down for minutes costs one warning when the outage
starts and one line when it ends, not one per attempt. The core is synchronous: :meth:`Uploader.step`
does one pass; :meth:`Uploader.run` loops it on a worker thread for the bridge node.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import requests
import yaml

from efm_policy.manifest import MANIFEST

from .episodes import read_metadata
from .spool import Spool, _size

Log = Callable[[str, str], None]  # (level, text)

ACCEPTED, DUPLICATE, STORED, REFUSED, RETRY, STOP = "accepted", "duplicate", "stored", "refused", "retry", "stop"


class LearnerClient:
    """The learner's HTTP API with a bearer token: one requests.Session (kept-alive connection)."""

    def __init__(self, base_url: str, token: str, connect_timeout_s: float = 5.0, read_timeout_s: float = 120.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"learner_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, stream: bool = False) -> requests.Response:
        return self.session.get(f"{self.base_url}{path}", timeout=self.timeout, stream=stream)

    def get_json(self, path: str) -> dict:
        """GET a JSON answer; HTTPError on anything but success."""
        response = self.get(path)
        response.raise_for_status()
        return response.json()

    def post_json(self, path: str, body: dict) -> dict:
        response = self.session.post(f"{self.base_url}{path}", json=body, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def episode_request(self, episode_id: str, sha256: str, robot: str, policy_version: str) -> tuple[str, dict]:
        return f"{self.base_url}/v1/episodes/{episode_id}", {
            "X-Content-SHA256": sha256, "X-Robot": robot, "X-Policy-Version": policy_version,
            "Content-Type": "application/x-tar"}

    def put_episode(self, episode_id: str, body: BinaryIO, size: int, sha256: str, robot: str,
                    policy_version: str) -> requests.Response:
        url, headers = self.episode_request(episode_id, sha256, robot, policy_version)
        data = body.getvalue() if isinstance(body, io.BytesIO) else body  # bytes go out in one send
        return self.session.put(url, data=data, headers={**headers, "Content-Length": str(size)},
                                timeout=self.timeout)

    def close(self) -> None:
        self.session.close()


@dataclass
class RetrySettings:
    """Backoff after a failed attempt: ``initial_s`` * 2^(failures-1), at most ``max_s``, of which up to a
    ``jitter`` fraction is taken off at random (robots that lost the learner together do not return in step)."""
    initial_s: float = 1.0
    max_s: float = 60.0
    jitter: float = 0.5
    max_sha_retries: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"retry initial_s must be > 0 and <= max_s, got initial_s={self.initial_s}, "
                             f"max_s={self.max_s}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"retry jitter must be within [0, 1), got {self.jitter}")
        if self.max_sha_retries < 1:
            raise ValueError(f"max_sha_retries must be at least 1, got {self.max_sha_retries}")

    def delay(self, failures: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))
        return base * (1.0 - self.jitter * rng.random())


@dataclass
class UploadStats:
    uploaded: int = 0          # 201 accepted, or 200 stored untrained
    duplicates: int = 0        # 200 duplicate: already there (an acknowledgement lost before)
    refused: int = 0
    retries: int = 0           # failed attempts that will be tried again
    bytes_sent: int = 0        # bodies of acknowledged uploads
    send_s: float = 0.0        # time spent on those uploads (tar + request)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (episode id, outcome), in order

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_sent / self.send_s if self.send_s > 0 else 0.0


def tar_episode(path: Path, out: BinaryIO) -> tuple[int, str]:
    """Write ``<id>/...`` as an uncompressed tar to ``out``; returns (size, sha256 hex). Owner, times and
    modes are fixed so the same folder always gives the same bytes (idempotent re-upload)."""
    digest = hashlib.sha256()
    start = out.tell()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info(f"{path.name}/", tarfile.DIRTYPE, 0))
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = f"{path.name}/{file.relative_to(path).as_posix()}"
            with open(file, "rb") as handle:
                tar.addfile(_info(name, tarfile.REGTYPE, file.stat().st_size), handle)
    size = out.tell() - start
    out.seek(start)
    for block in iter(lambda: out.read(1 << 20), b""):
        digest.update(block)
    out.seek(start)
    return size, digest.hexdigest()


def _info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def model_spec(model_dir: str | Path) -> dict:
    """What ``GET /v1/spec`` answers for a model directory: its manifest's embodiment, tokenizers and
    input (cameras, history, image size, proprio), as stored in ``manifest.json``."""
    manifest = json.loads((Path(model_dir) / MANIFEST).read_text())
    return {"embodiment": manifest["embodiment"], "tokenizers": manifest["tokenizers"],
            "input_spec": manifest["input"]}


def spec_differences(robot: dict, learner: dict) -> list[str]:
    """Keys of the learner's spec (``embodiment``, ``tokenizers``, ``input_spec``) that differ from the robot's."""
    return [f"{key}: robot {robot.get(key)!r}, learner {learner.get(key)!r}"
            for key in ("embodiment", "tokenizers", "input_spec") if _canonical(robot.get(key)) != _canonical(learner.get(key))]


def _canonical(value):
    return json.dumps(value, sort_keys=True)


class Uploader:
    def __init__(self, spool: Spool, client: LearnerClient, robot_spec: dict, robot: str = "",
                 retry: RetrySettings | None = None, log: Log | None = None, rng: random.Random | None = None,
                 is_held: Callable[[str], bool] = lambda episode_id: False, memory_limit: int = 64 << 20) -> None:
        self.spool = spool
        self.client = client
        self.robot_spec = robot_spec
        self.robot = robot
        self.retry = retry or RetrySettings()
        self._log = log or (lambda level, text: None)
        self._rng = rng or random.Random()
        self._is_held = is_held
        self.memory_limit = memory_limit
        self.stats = UploadStats()
        self.stopped: str | None = None    # why uploading stopped (token, spec, wrong URL): a human must act
        self.spec_checked = False
        self.lock = threading.Lock()       # held while an episode is read for upload; see claim_for_label
        self.in_flight: str | None = None
        self.progress = threading.Condition()
        self._failures = 0                  # consecutive failed attempts (backoff exponent)
        self._outage_since: float | None = None
        self._sha_failures: dict[str, int] = {}

    # ---- one pass -------------------------------------------------------------------------------
    def step(self) -> float | None:
        """Check the learner's spec once, then upload waiting episodes until the queue is empty (None) or
        an attempt fails (returns the backoff delay in seconds). Does nothing once stopped."""
        if self.stopped:
            return None
        if not self.spec_checked and not self._check_spec():
            return None if self.stopped else self._failed()
        for path in self.spool.pending():
            if self._is_held(path.name):
                continue
            outcome = self.upload(path)
            if outcome == STOP:
                return None
            if outcome == RETRY:
                return self._failed()
        return None

    def upload(self, path: Path) -> str:
        """One attempt for one episode; moves it when the learner answered for good. Returns the outcome."""
        episode_id = path.name
        try:
            outcome = self._send(path)
        except (requests.ConnectionError, requests.Timeout) as exc:
            outcome = self._unreachable(f"{type(exc).__name__}: {_short(exc)}")
        finally:
            self.in_flight = None
        with self.progress:
            self.stats.outcomes.append((episode_id, outcome))
            self.progress.notify_all()
        return outcome

    def _send(self, path: Path) -> str:
        episode_id, started = path.name, time.monotonic()
        with self.lock:
            self.in_flight = episode_id
            try:
                metadata = read_metadata(path)
            except (ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
                return self._refuse(episode_id, f"unreadable on the robot, not sent: metadata.yaml: {exc}")
            body = io.BytesIO() if _size(path) <= self.memory_limit else tempfile.TemporaryFile(dir=self.spool.root)
            size, sha = tar_episode(path, body)
        with body:
            response = self.client.put_episode(episode_id, body, size, sha, metadata.get("robot") or self.robot,
                                               metadata.get("policy_version", ""))
        return self._judge(episode_id, response, size, time.monotonic() - started)

    def claim_for_label(self, episode_id: str) -> bool:
        """Call with ``lock`` held: may a late human label still change this episode before it is sent?"""
        return self.in_flight != episode_id and (self.spool.root / episode_id).is_dir()

    # ---- the loop on a worker thread --------------------------------------------------------------
    def run(self, stop: threading.Event, wake: threading.Event, idle_s: float = 5.0,
            after_pass: Callable[[], None] = lambda: None) -> None:
        """Upload until ``stop`` is set; ``wake`` (a new episode) ends an idle wait early, never a backoff.
        ``after_pass`` runs on this thread after every pass (the bridge sizes the spool there)."""
        while not stop.is_set():
            try:
                delay = self.step()
                after_pass()
            except Exception as exc:  # a bug or a disk error must not end uploads for good: say it, back off
                self._log("error", f"upload pass failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                delay = self._failed()
            if delay is not None:
                stop.wait(delay)
                continue
            wake.wait(idle_s if not self.stopped else 3600.0)
            wake.clear()

    def wait_for(self, predicate: Callable[[UploadStats], bool], timeout_s: float) -> bool:
        """Block until ``predicate(stats)`` holds after some attempt (tests, benchmarks)."""
        with self.progress:
            return self.progress.wait_for(lambda: predicate(self.stats) or self.stopped is not None, timeout_s) \
                and predicate(self.stats)

    # ---- decisions --------------------------------------------------------------------------------
    def _check_spec(self) -> bool:
        try:
            response = self.client.get("/v1/spec")
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._unreachable(f"{type(exc).__name__}: {_short(exc)}")
            return False
        status = response.status_code
        if status != 200:
            if status in (401, 404, 405):
                self._judge("(spec)", response, 0, 0.0)  # stops, saying what to fix
            elif status >= 500 or status in (408, 429):
                self._unreachable(f"HTTP {status} on GET /v1/spec")
            else:
                self._stop(f"GET {self.client.base_url}/v1/spec answered {status}: {response.text[:200]}")
            return False
        differences = spec_differences(self.robot_spec, response.json())
        if differences:
            self._stop(f"the learner at {self.client.base_url} trains a different model than this robot runs "
                       f"({'; '.join(differences)}); no episode is uploaded. Point learner_url at this robot's "
                       "learner or give the robot that learner's model (model_dir)")
            return False
        self.spec_checked = True
        self._reachable()
        return True

    def _judge(self, episode_id: str, response: requests.Response, size: int, seconds: float) -> str:
        status, answer = response.status_code, _json(response)
        detail = str(answer.get("detail", "")) or response.text[:200]
        reason = str(answer.get("reason", ""))
        if status in (200, 201):
            self._reachable()
            duplicate = answer.get("status") == "duplicate"
            self.spool.mark_uploaded(episode_id)
            self._sha_failures.pop(episode_id, None)
            with self.progress:
                self.stats.duplicates += duplicate
                self.stats.uploaded += not duplicate
                self.stats.bytes_sent += size
                self.stats.send_s += seconds
            if answer.get("status") == "stored" and not answer.get("trained", True):
                self._log("info", f"episode {episode_id} stored, not trained on: {answer.get('reason', '')}")
            return DUPLICATE if duplicate else ACCEPTED if status == 201 else STORED
        if status == 401:
            return self._stop(f"the learner at {self.client.base_url} refused the token (401): set the bridge's "
                              "token_file (or token) to the learner's token and restart the bridge; nothing was moved")
        if status in (404, 405):
            return self._stop(f"{self.client.base_url} answered {status} to {response.request.method} "
                              f"{response.request.path_url}: not an efm learner (check learner_url); nothing was moved")
        if status == 409 and (reason == "spec_mismatch" or (reason != "content_differs" and _names_spec(detail))):
            return self._stop(f"the learner refused episode {episode_id}: its model does not match ({detail}); "
                              "uploading stopped, nothing was moved: run the learner's model on this robot")
        if status == 400 and (reason == "sha256_mismatch" or (not reason and "sha256" in detail.lower())):
            tries = self._sha_failures[episode_id] = self._sha_failures.get(episode_id, 0) + 1
            if tries < self.retry.max_sha_retries:
                self._count_retry()
                self._log("warning", f"episode {episode_id} arrived damaged ({detail}); sending it again")
                return RETRY
            return self._refuse(episode_id, f"400 after {tries} tries, the body never arrived intact: {detail}")
        if status >= 500 or status in (408, 429):
            return self._unreachable(f"HTTP {status}: {detail}")
        if 400 <= status < 500:
            return self._refuse(episode_id, f"{status}: {detail}")
        return self._unreachable(f"unexpected HTTP {status}: {detail}")

    def _refuse(self, episode_id: str, reason: str) -> str:
        self._reachable()
        self.spool.mark_refused(episode_id, reason)
        self._sha_failures.pop(episode_id, None)
        with self.progress:
            self.stats.refused += 1
        self._log("error", f"the learner refused episode {episode_id} ({reason}); moved to "
                           f"{self.spool.root / '.refused' / episode_id}")
        return REFUSED

    def _stop(self, why: str) -> str:
        with self.progress:
            self.stopped = why
            self.progress.notify_all()
        self._log("error", f"uploading stopped: {why}")
        return STOP

    def _unreachable(self, why: str) -> str:
        self._count_retry()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            waiting = len(self.spool.pending())
            self._log("warning", f"learner at {self.client.base_url} unavailable ({why}); {waiting} episodes wait "
                                 f"in the spool, retrying every {self.retry.initial_s:g}-{self.retry.max_s:g} s")
        return RETRY

    def _reachable(self) -> None:
        self._failures = 0
        if self._outage_since is not None:
            self._log("info", f"learner at {self.client.base_url} reachable again after "
                              f"{time.monotonic() - self._outage_since:.0f} s; uploading")
            self._outage_since = None

    def _count_retry(self) -> None:
        with self.progress:
            self.stats.retries += 1
            self.progress.notify_all()

    def _failed(self) -> float:
        self._failures += 1
        return self.retry.delay(self._failures, self._rng)


def _json(response: requests.Response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _names_spec(detail: str) -> bool:
    return any(word in detail.lower() for word in ("spec", "embodiment", "tokenizer", "proprio"))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."
