"""The learner's HTTP API on a real uvicorn bound to 127.0.0.1, driven with requests."""
from __future__ import annotations

import hashlib
import socket
import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
requests = pytest.importorskip("requests")
uvicorn = pytest.importorskip("uvicorn")

from efm_trainer.learner import Learner, LearnerSettings  # noqa: E402
from efm_trainer.learner_service import create_app, load_or_create_token  # noqa: E402
from practice_episodes import episode_tar, tiny_stage1, write_practice_episode  # noqa: E402

TOKEN = "s3cret-token"
GOOD, BAD = [[3, 12]] * 3, [[9, 1]] * 3


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    stage1 = tiny_stage1(root / "stage1")
    learner = Learner(LearnerSettings(dir=str(root / "learner"), run=str(stage1.run),
                                      initial_model=str(stage1.model), steps_per_update=6, sgd_steps=2,
                                      batch_size=4, lr=0.02), log=lambda _: None)
    # Bound before the server starts: connections wait in the backlog, so no readiness polling is needed.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(learner, TOKEN), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    yield learner, f"http://127.0.0.1:{sock.getsockname()[1]}/v1", session, root
    server.should_exit = True
    thread.join(30)
    sock.close()


def put(session, base, root, episode_id, version, tokens, rewards, body=None, sha=None, **kwargs):
    if body is None:
        path = write_practice_episode(root / "robot", episode_id, version, tokens, rewards, **kwargs)
        body = episode_tar(path)
    headers = {"X-Content-SHA256": sha or hashlib.sha256(body).hexdigest(), "X-Robot": "robot_a",
               "X-Policy-Version": version}
    return session.put(f"{base}/episodes/{episode_id}", data=body, headers=headers, timeout=60)


def test_a_wrong_or_missing_token_gets_401_and_changes_nothing(service):
    learner, base, session, root = service
    body = episode_tar(write_practice_episode(root / "robot", "x-1", "sft-0000", GOOD, [1.0] * 3))
    headers = {"X-Content-SHA256": hashlib.sha256(body).hexdigest()}
    for auth in ({"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {}):
        answer = requests.put(f"{base}/episodes/x-1", data=body, headers={**headers, **auth}, timeout=30)
        assert answer.status_code == 401, answer.text
        assert requests.post(f"{base}/current", json={"version": "sft-0000"}, headers=auth, timeout=30).status_code == 401
    assert requests.get(f"{base}/status", timeout=30).status_code == 401
    assert "x-1" not in learner.records
    assert session.get(f"{base}/status", timeout=30).json()["episodes_total"] == 0


def test_spec_upload_duplicate_truncated_and_conflict(service):
    learner, base, session, root = service
    spec = session.get(f"{base}/spec", timeout=30).json()
    manifest = learner.manifest()
    assert spec == {"embodiment": "toy", "tokenizers": manifest["tokenizers"], "input_spec": manifest["input"]}
    path = write_practice_episode(root / "robot", "u-1", "sft-0000", GOOD, [1.0] * 3)
    body = episode_tar(path)
    first = put(session, base, root, "u-1", "sft-0000", None, None, body=body)
    assert (first.status_code, first.json()) == (201, {"status": "accepted", "trained": True})
    again = put(session, base, root, "u-1", "sft-0000", None, None, body=body)
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    truncated = put(session, base, root, "u-2", "sft-0000", None, None, body=body[:1000],
                    sha=hashlib.sha256(body).hexdigest())
    assert truncated.status_code == 400 and truncated.json()["reason"] == "sha256_mismatch"
    not_a_tar = put(session, base, root, "u-2", "sft-0000", None, None, body=b"not a tar at all")
    assert not_a_tar.status_code == 400 and not_a_tar.json()["reason"] == "unreadable"
    other = episode_tar(write_practice_episode(root / "other", "u-1", "sft-0000", BAD, [1.0] * 3))
    conflict = put(session, base, root, "u-1", "sft-0000", None, None, body=other)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "content_differs"
    aloha = put(session, base, root, "u-3", "sft-0000", GOOD, [1.0] * 3, embodiment="aloha")
    assert aloha.status_code == 409 and aloha.json()["reason"] == "spec_mismatch"
    assert "embodiment 'aloha'" in aloha.json()["detail"]
    assert session.get(f"{base}/status", timeout=30).json()["episodes_total"] == 1


def test_versions_download_evaluations_and_rollback(service):
    learner, base, session, root = service
    answer = put(session, base, root, "v-1", "sft-0000", BAD, [-1.0] * 3)    # with u-1: six steps, an update
    assert answer.status_code == 201
    assert learner.wait_idle(120) and not learner.last_error
    listing = session.get(f"{base}/versions", timeout=30).json()
    assert listing["current"] == "rl-0001" and listing["best"] is None
    entry = listing["versions"][-1]
    assert (entry["version"], entry["parent"], entry["episodes"]) == ("rl-0001", "sft-0000", 0)
    for spec in entry["files"] + [{"name": "manifest.json", "sha256": entry["manifest_sha256"]}]:
        got = session.get(f"{base}/versions/rl-0001/files/{spec['name']}", timeout=30)
        assert got.status_code == 200 and got.headers["content-type"] == "application/octet-stream"
        assert hashlib.sha256(got.content).hexdigest() == spec["sha256"]
    assert session.get(f"{base}/versions/rl-0001/files/..%2Fstate.json", timeout=30).status_code == 404
    assert session.get(f"{base}/versions/rl-0009/files/policy.onnx", timeout=30).status_code == 404

    late = put(session, base, root, "v-2", "sft-0000", GOOD, [1.0] * 3)
    assert late.status_code == 200 and late.json()["status"] == "stored" and "off-policy" in late.json()["reason"]
    evaluation = {"version": "sft-0000", "episodes": 20, "successes": 12, "seeds": list(range(20))}
    assert session.post(f"{base}/evaluations", json=evaluation, timeout=30).json()["best"] == "sft-0000"
    bad = session.post(f"{base}/evaluations", json={**evaluation, "successes": 30}, timeout=30)
    assert bad.status_code == 400 and "successes" in bad.json()["detail"]
    rolled = session.post(f"{base}/current", json={"version": "sft-0000"}, timeout=30)
    assert rolled.json() == {"current": "sft-0000", "previous": "rl-0001"}
    assert session.post(f"{base}/current", json={"version": "rl-0042"}, timeout=30).status_code == 404
    status = session.get(f"{base}/status", timeout=30).json()
    assert status["current"] == "sft-0000" and status["best"] == "sft-0000"
    assert status["episodes_per_version"] == {"sft-0000": 3}
    assert status["evaluations"]["sft-0000"]["success_rate"] == pytest.approx(0.6)


def test_token_file_is_created_owner_only(tmp_path):
    token, path = load_or_create_token(None, tmp_path)
    assert len(token) >= 32 and path == tmp_path / "token" and (path.stat().st_mode & 0o077) == 0
    assert load_or_create_token(str(path), tmp_path)[0] == token


def test_efm_learner_use_rolls_the_fleet_to_a_version_or_the_best(service, tmp_path, capsys):
    from efm_runtime.cli import main

    learner, base, session, root = service
    if "rl-0001" not in [v["version"] for v in session.get(f"{base}/versions", timeout=30).json()["versions"]]:
        pytest.skip("needs the version the rollback test publishes")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    url = base.removesuffix("/v1")
    assert main(["learner", "use", "rl-0001", "--url", url, "--token-file", str(token_file)]) == 0
    assert "current version is now rl-0001" in capsys.readouterr().out
    assert session.get(f"{base}/status", timeout=30).json()["current"] == "rl-0001"
    session.post(f"{base}/evaluations", json={"version": "sft-0000", "episodes": 20, "successes": 12,
                                               "seeds": list(range(20))}, timeout=30)
    assert main(["learner", "use", "best", "--url", url, "--token-file", str(token_file)]) == 0
    assert session.get(f"{base}/status", timeout=30).json()["current"] == "sft-0000"
    assert main(["learner", "use", "rl-0042", "--url", url, "--token-file", str(token_file)]) == 2
    assert "HTTP 404" in capsys.readouterr().err
