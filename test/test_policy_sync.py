"""Policy sync against a fake learner serving real (tiny) exported model versions."""
import socket

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from bridge_fakes import FakeLearner, derive_version, model_versions, spec_of  # noqa: E402
from efm_policy.manifest import read_manifest  # noqa: E402
from efm_trainer.policy_sync import PolicySync  # noqa: E402
from efm_trainer.uploader import LearnerClient  # noqa: E402


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    return model_versions(tmp_path_factory)


@pytest.fixture(scope="module")
def server(versions):
    with FakeLearner(spec=spec_of(versions["sft-0000"])) as learner:
        yield learner


@pytest.fixture
def learner(server, versions):
    server.reset(spec=spec_of(versions["sft-0000"]))
    server.versions = {}
    server.add_version(versions["sft-0000"])
    yield server


def make_sync(tmp_path, learner, versions, token="secret", logs=None):
    return PolicySync(LearnerClient(learner.url, token), tmp_path / "models", versions["sft-0000"],
                      log=(lambda level, text: logs.append((level, text))) if logs is not None else None)


def test_nothing_to_do_while_the_robot_runs_current(tmp_path, learner, versions):
    assert make_sync(tmp_path, learner, versions).check_once() is None and learner.downloads == []


def test_new_version_downloads_only_what_changed_and_verifies(tmp_path, learner, versions):
    sync = make_sync(tmp_path, learner, versions)
    learner.add_version(versions["rl-0001"])
    model = sync.check_once()
    assert model.version == "rl-0001" and model.model_dir == tmp_path / "models" / "rl-0001"
    assert model.embodiment == "toy" and model.learner_step == 7
    assert sorted(learner.downloads) == ["rl-0001/manifest.json", "rl-0001/policy.onnx"]  # the rest copied
    assert read_manifest(model.model_dir, verify=True).version == "rl-0001"
    assert sync.check_once() is None and sync.version == "rl-0001"
    learner.add_version(versions["rl-0002"])  # copies may come from a downloaded version too
    assert sync.check_once().version == "rl-0002" and len(learner.downloads) == 4


def test_corrupt_download_switches_nothing_and_is_retried(tmp_path, learner, versions):
    logs = []
    sync = make_sync(tmp_path, learner, versions, logs=logs)
    learner.add_version(versions["rl-0001"])
    learner.corrupt = {"policy.onnx"}
    assert sync.check_once() is None
    assert sync.version == "sft-0000" and sorted(p.name for p in (tmp_path / "models").iterdir()) == []
    assert any("policy.onnx of rl-0001 arrived corrupt" in text and "keeping sft-0000" in text for _, text in logs)
    learner.corrupt = set()
    assert sync.check_once().version == "rl-0001"


def test_a_model_that_disagrees_with_its_own_manifest_is_refused(tmp_path, learner, versions):
    broken = derive_version(versions["rl-0001"], tmp_path / "broken", "rl-0003", new_policy=False)
    (broken / "reward.onnx").write_bytes(b"not the reward model")  # listed sha follows the file, manifest not
    learner.add_version(broken)
    logs = []
    assert make_sync(tmp_path, learner, versions, logs=logs).check_once() is None
    assert any("reward.onnx is corrupt" in text for _, text in logs)
    assert not (tmp_path / "models" / "rl-0003").exists() and not (tmp_path / "models" / "rl-0003.partial").exists()


def test_a_version_for_another_model_is_refused_once(tmp_path, learner, versions):
    logs = []
    sync = make_sync(tmp_path, learner, versions, logs=logs)
    learner.add_version(versions["aloha"])
    assert sync.check_once() is None and sync.check_once() is None
    assert "embodiment: robot 'toy', learner 'aloha'" in sync.refused["rl-0009"]
    assert sum("another model" in text for _, text in logs) == 1
    assert sync.version == "sft-0000" and not (tmp_path / "models" / "rl-0009").exists()
    assert learner.downloads.count("rl-0009/policy.onnx") == 1


def test_a_restarted_bridge_reuses_a_verified_download(tmp_path, learner, versions):
    learner.add_version(versions["rl-0001"])
    assert make_sync(tmp_path, learner, versions).check_once().version == "rl-0001"
    (tmp_path / "models" / "rl-0002.partial").mkdir()  # a download the kill interrupted
    learner.downloads.clear()
    restarted = make_sync(tmp_path, learner, versions)
    assert restarted.check_once().version == "rl-0001" and learner.downloads == []
    assert not (tmp_path / "models" / "rl-0002.partial").exists()


def test_wrong_token_stops_polling(tmp_path, learner, versions):
    sync = make_sync(tmp_path, learner, versions, token="wrong")
    assert sync.check_once() is None and "refused the token (401)" in sync.stopped


def test_learner_down_keeps_the_old_version_and_says_so_once(tmp_path, versions):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logs = []
    sync = PolicySync(LearnerClient(f"http://127.0.0.1:{port}", "secret"), tmp_path / "models",
                      versions["sft-0000"], log=lambda level, text: logs.append((level, text)))
    assert sync.check_once() is None and sync.check_once() is None
    assert [level for level, _ in logs] == ["warning"] and sync.version == "sft-0000"
