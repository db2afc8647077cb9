"""The uploader against a fake learner on loopback: acknowledgements, outages, kills, refusals."""
import random
import threading

import pytest

from bridge_fakes import FakeLearner, play_episode
from efm_trainer.recording import EpisodeRecording
from efm_trainer.spool import Spool
from efm_trainer.uploader import (DUPLICATE, RETRY, STOP, LearnerClient, RetrySettings, Uploader,
                                  spec_differences, tar_episode)

SPEC = {"embodiment": "toy", "tokenizers": {"action": {"bins": 16}}, "input_spec": {"cameras": ["top"]}}
FAST = RetrySettings(initial_s=0.01, max_s=0.05, jitter=0.5, max_sha_retries=3)


@pytest.fixture(scope="module")
def server():
    with FakeLearner(spec=SPEC) as learner:
        yield learner


@pytest.fixture
def learner(server):
    server.reset(spec=SPEC)
    yield server
    if server.port and not server.running:  # a test that took it down
        server.start()


def spool_with(tmp_path, *episode_ids, embodiment="toy"):
    recording = EpisodeRecording(tmp_path / "spool", robot="robot_a")
    for episode_id in episode_ids:
        play_episode(recording, episode_id, embodiment=embodiment, policy="rl-0001")
    return Spool(tmp_path / "spool", disk_usage=lambda p: (1 << 40, 0, 1 << 40))


def make(spool, learner, token="secret", client=None, logs=None, **kw):
    client = client or LearnerClient(learner.url, token, read_timeout_s=kw.pop("read_timeout_s", 30.0))
    return Uploader(spool, client, SPEC, robot="robot_a", retry=FAST, rng=random.Random(0),
                    log=(lambda level, text: logs.append((level, text))) if logs is not None else None, **kw)


def drain(uploader, passes=20):
    for _ in range(passes):
        if uploader.step() is None:
            return
    raise AssertionError(f"still failing after {passes} passes: {uploader.stats}")


def test_uploads_oldest_first_and_moves_only_after_acknowledgement(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-b", "ep-a", "ep-c")
    uploader = make(spool, learner)
    assert uploader.step() is None
    assert [e for e, _ in uploader.stats.outcomes] == ["ep-b", "ep-a", "ep-c"]
    assert set(learner.stored) == {"ep-a", "ep-b", "ep-c"} and spool.pending() == []
    assert all(spool.is_uploaded(e) for e in learner.stored)
    headers = learner.headers["ep-a"]
    assert (headers["x-robot"], headers["x-policy-version"]) == ("robot_a", "rl-0001")
    assert uploader.stats.uploaded == 3 and uploader.stats.bytes_sent > 0


def test_the_tar_of_a_folder_is_the_same_bytes_every_time(tmp_path):
    import io
    spool = spool_with(tmp_path, "ep-1")
    first, second = io.BytesIO(), io.BytesIO()
    assert tar_episode(spool.pending()[0], first) == tar_episode(spool.pending()[0], second)
    assert first.getvalue() == second.getvalue()


def test_learner_down_for_a_while_then_up_everything_arrives_once(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1", "ep-2")
    learner.stop()
    logs = []
    uploader = make(spool, learner, logs=logs)
    stop, wake = threading.Event(), threading.Event()
    worker = threading.Thread(target=uploader.run, args=(stop, wake, 0.05))
    worker.start()
    try:
        assert uploader.wait_for(lambda s: s.retries >= 5, 30)
        assert len(spool.pending()) == 2
        learner.start()
        assert uploader.wait_for(lambda s: s.uploaded == 2, 30)
    finally:
        stop.set(), wake.set()
        worker.join(10)
    assert set(learner.stored) == {"ep-1", "ep-2"} and [s for s, _ in learner.puts] == [201, 201]
    outage = [text for level, text in logs if "unavailable" in text]
    assert len(outage) == 1 and "2 episodes wait" in outage[0]  # once per outage, not per attempt
    assert sum("reachable again" in text for _, text in logs) == 1


class KilledMidUpload(Exception):
    pass


class DiesMidUpload(LearnerClient):
    """Sends half the body, then the process 'dies' (the exception escapes the uploader)."""

    def put_episode(self, episode_id, body, size, sha256, robot, policy_version):
        url, headers = self.episode_request(episode_id, sha256, robot, policy_version)

        def half_then_die():
            yield body.read(size // 2)
            raise KilledMidUpload("bridge killed mid-upload")

        return self.session.put(url, data=half_then_die(), headers=headers, timeout=self.timeout)


def test_killed_mid_upload_then_restarted_arrives_exactly_once(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1", "ep-2")
    dying = make(spool, learner, client=DiesMidUpload(learner.url, "secret"))
    with pytest.raises(KilledMidUpload):
        dying.step()
    assert [p.name for p in spool.pending()] == ["ep-1", "ep-2"]  # nothing moved by a half upload
    restarted = make(spool, learner)
    drain(restarted)
    assert set(learner.stored) == {"ep-1", "ep-2"} and spool.pending() == []
    assert [status for status, _ in learner.puts] == [201, 201]


def test_reply_lost_after_store_is_acknowledged_by_the_duplicate(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.fail_after_store = 1
    uploader = make(spool, learner)
    assert uploader.step() is not None and uploader.stats.outcomes == [("ep-1", RETRY)]
    drain(uploader)
    assert uploader.stats.outcomes[-1] == ("ep-1", DUPLICATE) and uploader.stats.duplicates == 1
    assert spool.is_uploaded("ep-1") and list(learner.stored) == ["ep-1"]


def test_slow_learner_times_out_then_the_retry_is_a_duplicate(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.slow, learner.slow_s = 1, 2.0
    uploader = make(spool, learner, read_timeout_s=0.3)
    drain(uploader)
    assert [o for _, o in uploader.stats.outcomes] == [RETRY, DUPLICATE] and spool.is_uploaded("ep-1")


def test_truncated_upload_is_retried_then_stored(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.truncate = 2
    uploader = make(spool, learner)
    drain(uploader)
    assert [s for s, _ in learner.puts] == [400, 400, 201] and spool.is_uploaded("ep-1")


def test_always_truncated_upload_ends_refused(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.truncate = 99
    uploader = make(spool, learner)
    drain(uploader)
    reason = (spool.root / ".refused" / "ep-1" / "reason.txt").read_text()
    assert "400 after 3 tries" in reason and "sha256 mismatch" in reason


def test_server_errors_are_retried(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.fail_5xx = 2
    uploader = make(spool, learner)
    drain(uploader)
    assert [s for s, _ in learner.puts] == [503, 503, 201] and uploader.stats.retries == 2


def test_unreadable_episode_is_refused_with_the_reason(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1", "ep-2")
    (spool.root / "ep-1" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    uploader = make(spool, learner)
    drain(uploader)
    assert "400: unreadable episode" in (spool.root / ".refused" / "ep-1" / "reason.txt").read_text()
    assert spool.is_uploaded("ep-2") and uploader.stats.refused == 1


def test_same_id_other_content_is_refused_not_overwritten(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.stored["ep-1"] = "0" * 64
    drain(make(spool, learner))
    assert "409" in (spool.root / ".refused" / "ep-1" / "reason.txt").read_text()


def test_wrong_token_stops_uploading_and_moves_nothing(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    logs = []
    uploader = make(spool, learner, token="wrong", logs=logs)
    assert uploader.step() is None and uploader.step() is None
    assert "refused the token (401)" in uploader.stopped and "token_file" in uploader.stopped
    assert [p.name for p in spool.pending()] == ["ep-1"] and learner.puts == []
    assert sum(level == "error" for level, _ in logs) == 1


def test_a_learner_for_another_model_is_refused_before_any_upload(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    learner.spec = {**SPEC, "input_spec": {"cameras": ["top", "wrist"]}}
    uploader = make(spool, learner)
    assert uploader.step() is None
    assert "input_spec: robot {'cameras': ['top']}" in uploader.stopped and learner.puts == []
    assert [p.name for p in spool.pending()] == ["ep-1"]


def test_spec_mismatch_on_upload_stops_and_moves_nothing(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1", embodiment="aloha")
    uploader = make(spool, learner)
    assert uploader.upload(spool.pending()[0]) == STOP
    assert "does not match" in uploader.stopped and [p.name for p in spool.pending()] == ["ep-1"]


def test_held_episodes_wait(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1", "ep-2")
    drain(make(spool, learner, is_held=lambda episode_id: episode_id == "ep-2"))
    assert [p.name for p in spool.pending()] == ["ep-2"] and list(learner.stored) == ["ep-1"]


def test_spec_comparison_names_what_differs():
    assert spec_differences(SPEC, {**SPEC, "tokenizers": {"action": {"bins": 16}}}) == []
    assert spec_differences(SPEC, {**SPEC, "embodiment": "aloha"}) == ["embodiment: robot 'toy', learner 'aloha'"]


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="initial_s must be > 0 and <= max_s"):
        RetrySettings(initial_s=10, max_s=1)
    with pytest.raises(ValueError, match="learner_url must start with http"):
        LearnerClient("127.0.0.1:8765", "t")


def test_an_episode_unreadable_on_the_robot_is_refused_without_sending(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    (spool.root / "ep-1" / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    drain(make(spool, learner))
    assert "unreadable on the robot" in (spool.root / ".refused" / "ep-1" / "reason.txt").read_text()
    assert learner.puts == []


def test_the_upload_thread_survives_an_unexpected_error(tmp_path, learner):
    spool = spool_with(tmp_path, "ep-1")
    logs = []
    uploader = make(spool, learner, logs=logs)
    real_pending, calls = spool.pending, []

    def pending_fails_once():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return real_pending()

    spool.pending = pending_fails_once
    stop, wake = threading.Event(), threading.Event()
    worker = threading.Thread(target=uploader.run, args=(stop, wake, 0.05))
    worker.start()
    try:
        assert uploader.wait_for(lambda s: s.uploaded == 1, 30)
    finally:
        stop.set(), wake.set()
        worker.join(10)
    assert any(level == "error" and "disk hiccup" in text for level, text in logs)
