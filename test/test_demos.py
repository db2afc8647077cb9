"""`efm demos` on the real LanguageTable simulation: topics, parallel workers, resume, bad input."""
import pytest

pytest.importorskip("mujoco", reason="mujoco is not installed: pip install -e '.[sim]'")

from efm_runtime import NodeOptions, build_node, create_context  # noqa: E402
from efm_runtime.cli import main  # noqa: E402
from efm_sim.node import SimNode  # noqa: E402
from efm_trainer.episodes import episode_dirs, read_episode  # noqa: E402


def test_language_table_sim_publishes_the_hardware_topics():
    ctx = create_context("embedded")
    build_node(SimNode, NodeOptions(namespace="/lt_1", context=ctx, parameters={"env": "language_table"}))
    topics = {t.name: t.type_name for t in ctx.topic_statistics()}
    ctx.shutdown()
    assert topics["/lt_1/camera/top/image_raw"] == "sensor_msgs/msg/Image"
    assert topics["/lt_1/effector"] == "geometry_msgs/msg/PointStamped"
    assert topics["/lt_1/action"] == "efm_msgs/msg/ActionChunk"
    assert "/clock" not in topics  # real time: no sim clock


def test_demos_with_two_workers_then_resume(tmp_path, capsys):
    out = tmp_path / "lt"
    assert main(["demos", "--env", "language_table", "--task", "block2block", "--episodes", "4",
                 "--workers", "2", "--out", str(out)]) == 0
    assert "recorded 4 episodes (0 already there)" in capsys.readouterr().out
    paths = episode_dirs(out)
    assert [p.name for p in paths] == [f"language_table-block2block-{s:06d}" for s in range(1, 5)]
    episode = read_episode(paths[0])
    frame = next(episode.images("top"))[1]
    assert frame.shape == (180, 320, 3)
    assert episode.metadata["task_family"] == "block2block" and episode.metadata["embodiment"] == "language_table"
    assert main(["demos", "--env", "language_table", "--task", "block2block", "--episodes", "5",
                 "--out", str(out)]) == 0
    assert "recorded 1 episodes (4 already there)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--env", "languagetable"], "unknown environment 'languagetable'; did you mean 'language_table'?"),
    (["--env", "language_table", "--task", "block2blok"], "did you mean 'block2block'?"),
    (["--env", "language_table", "--noise", "2"], "--noise must be within [0, 1]"),
])
def test_demos_bad_input_is_explained(tmp_path, capsys, args, message):
    assert main(["demos", *args, "--episodes", "1", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_an_episode_depends_only_on_its_seed(tmp_path):
    """Same seeds, different worker split and run: identical episodes (lock-step freezes idle time)."""
    from efm_trainer.episodes import summarize_dataset

    runs = []
    for name, workers in (("a", 1), ("b", 2)):
        assert main(["demos", "--env", "language_table", "--episodes", "6", "--workers", str(workers),
                     "--noise", "0.5", "--out", str(tmp_path / name)]) == 0
        runs.append({e["episode_id"]: (e["steps"], e["outcome"], e["instruction"])
                     for e in summarize_dataset(tmp_path / name).episodes})
    assert runs[0] == runs[1] and len(runs[0]) == 6
    first = [read_episode(episode_dirs(tmp_path / n)[0]).topic("/action") for n in ("a", "b")]
    assert [list(m.values) for _, m in first[0]] == [list(m.values) for _, m in first[1]]


def test_aloha_sim_publishes_joint_states_and_chosen_cameras():
    ctx = create_context("embedded")
    sim = build_node(SimNode, NodeOptions(namespace="/aloha_1", context=ctx, parameters={
        "env": "aloha", "cameras": ["top", "left_wrist"]}))
    topics = {t.name: t.type_name for t in ctx.topic_statistics()}
    ctx.shutdown()
    assert sim.env.action_dim * sim.env.chunk_size == 70  # 5 x 14 values per 10 Hz policy step
    assert topics["/aloha_1/joint_states"] == "sensor_msgs/msg/JointState"
    assert {t for t in topics if "/camera/" in t} == {"/aloha_1/camera/top/image_raw",
                                                      "/aloha_1/camera/left_wrist/image_raw"}


@pytest.mark.parametrize("env, camera", [("language_table", "front"), ("aloha", "wrist_left")])
def test_unknown_camera_is_a_clear_error(env, camera):
    from efm_runtime.errors import EfmUserError

    ctx = create_context("embedded")
    with pytest.raises(EfmUserError, match=f"camera.*'{camera}'"):
        build_node(SimNode, NodeOptions(context=ctx, parameters={"env": env, "cameras": [camera]}))
    assert ctx.nodes == []
