"""The recording core shared by episode_recorder and trainer_bridge: metadata context and late labels."""
from rosbags.rosbag2 import Reader

from bridge_fakes import EpisodeStatus, label, play_episode
from efm_trainer.episodes import read_episode, read_metadata
from efm_trainer.recording import EpisodeRecording


def test_metadata_carries_robot_policy_and_reward_model_versions(tmp_path):
    finished = []
    recording = EpisodeRecording(tmp_path, robot="robot_a", on_finished=lambda i, p: finished.append((i, p)))
    play_episode(recording, "robot_a-1", policy="rl-0003", reward_model="sft-0000")
    assert finished == [("robot_a-1", tmp_path / "robot_a-1")]
    metadata = read_metadata(tmp_path / "robot_a-1")
    assert (metadata["robot"], metadata["policy_version"], metadata["reward_model_version"]) == \
        ("robot_a", "rl-0003", "sft-0000")
    assert metadata["outcome"] == "succeeded" and metadata["human_label"] == "0"
    episode = read_episode(tmp_path / "robot_a-1")
    assert len(episode.topic("/action")) == 3 and len(list(episode.images("top"))) == 3


def test_a_late_human_label_rewrites_the_metadata_and_the_bag_still_opens(tmp_path):
    recording = EpisodeRecording(tmp_path)
    play_episode(recording, "ep-1")
    recording.on_episode(label("ep-1", EpisodeStatus.LABEL_FAILURE))
    assert read_metadata(tmp_path / "ep-1")["human_label"] == str(EpisodeStatus.LABEL_FAILURE)
    with Reader(tmp_path / "ep-1") as reader:
        assert reader.message_count > 0
    assert read_metadata(tmp_path / "ep-1")["outcome"] == "succeeded"  # the detector's outcome is kept beside it


def test_a_label_the_owner_refuses_leaves_the_episode_alone(tmp_path):
    recording = EpisodeRecording(tmp_path, on_labelled=lambda episode_id, value: False)
    play_episode(recording, "ep-1")
    recording.on_episode(label("ep-1"))
    assert read_metadata(tmp_path / "ep-1")["human_label"] == "0"


def test_an_episode_acted_by_two_versions_names_both(tmp_path):
    logs = []
    recording = EpisodeRecording(tmp_path, log=lambda level, text: logs.append((level, text)))
    original = recording.on_action

    def swap_midway(msg):  # a policy that hot-swapped mid-episode (at_episode_boundary false)
        msg.policy_version = "rl-0001" if msg.step == 0 else "rl-0002"
        original(msg)

    recording.on_action = swap_midway
    play_episode(recording, "ep-1")
    assert read_metadata(tmp_path / "ep-1")["policy_version"] == "rl-0001,rl-0002"
    assert any(level == "warning" and "several policy versions" in text for level, text in logs)


def test_without_chunks_the_status_names_the_policy(tmp_path):
    recording = EpisodeRecording(tmp_path)
    play_episode(recording, "ep-2", policy="rl-0002", steps=0)
    assert read_metadata(tmp_path / "ep-2")["policy_version"] == "rl-0002"


def test_png_frames_come_back_exactly_and_jpeg_ones_do_not(tmp_path):
    """Practice episodes are stored lossless: the learner must see the pixels the policy acted on."""
    import numpy as np

    frames = {}
    for image_format in ("png", "jpeg"):
        recording = EpisodeRecording(tmp_path / image_format, image_format=image_format)
        play_episode(recording, "ep-1", steps=2)
        episode = read_episode(tmp_path / image_format / "ep-1")
        frames[image_format] = [rgb for _, rgb in episode.images("top")]
    rng = np.random.default_rng(len("ep-1"))   # play_episode's frames, drawn again
    sent = [rng.integers(0, 255, (18, 32, 3), dtype=np.uint8) for _ in range(2)]
    assert all(np.array_equal(got, want) for got, want in zip(frames["png"], sent))
    assert not all(np.array_equal(got, want) for got, want in zip(frames["jpeg"], sent))


def test_ground_truth_is_recorded_at_the_time_of_the_frame_it_judges(tmp_path):
    from efm_runtime import get_message
    from efm_trainer.recording import GROUND_TRUTH_TOPIC

    Bool = get_message("std_msgs/msg/Bool")
    recording = EpisodeRecording(tmp_path)
    original, truths = recording.on_image, iter([False, False, True])

    def image_then_truth(camera, msg):   # the sim publishes its flag right after each observation
        original(camera, msg)
        recording.on_ground_truth(Bool(data=next(truths)))

    recording.on_image = image_then_truth
    play_episode(recording, "ep-1", steps=3)
    episode = read_episode(tmp_path / "ep-1")
    flags = episode.topic(GROUND_TRUTH_TOPIC)
    assert [msg.data for _, msg in flags] == [False, False, True]
    assert [stamp for stamp, _ in flags] == [stamp for stamp, _ in episode.images("top")]
