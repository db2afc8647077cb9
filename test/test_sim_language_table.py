"""LanguageTable in MuJoCo: determinism, success functions, action checks, oracle, camera, pushing."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="mujoco is not installed (pip install -e .[sim])")

from efm_sim.env import TaskSpec
from efm_sim.language_table import LanguageTableEnv, LanguageTableOracle
from efm_sim.language_table import tasks as T
from efm_sim.language_table.oracle import run_episode

FAR = {  # BLOCK_4 blocks parked in the corners, out of the way
    "red_moon": (0.57, 0.27), "blue_cube": (0.57, -0.27), "green_star": (0.18, 0.27), "yellow_pentagon": (0.18, -0.27),
}


@pytest.fixture(scope="module")
def env():
    e = LanguageTableEnv("BLOCK_4")
    yield e
    e.close()


@pytest.fixture(scope="module")
def env8():
    e = LanguageTableEnv("BLOCK_8")
    yield e
    e.close()


@pytest.fixture(scope="module")
def frame_env():
    """A BLOCK_8 env whose renderer works, or a skip that says why."""
    e = LanguageTableEnv("BLOCK_8")
    try:
        e.reset(3)
    except Exception as exc:  # noqa: BLE001 -- no OpenGL (EGL/OSMesa) on this machine
        e.close()
        pytest.skip(f"offscreen rendering unavailable (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {exc}")
    yield e
    e.close()


def b2b(block="red_moon", target="blue_cube"):
    return TaskSpec(f"push the {block} to the {target}", "block2block", {"block": block, "target": target})


# --- interface -------------------------------------------------------------------------------

def test_declares_the_languagetable_interface(env):
    assert env.name == "language_table" and env.control_hz == 10.0 and env.policy_hz == 10.0
    assert env.chunk_size == 1 and env.action_dim == 2 and env.max_policy_steps == 200
    assert env.camera_names == ("top",) and env.image_size == {"top": (180, 320)}
    assert env.proprio_names == ("x", "y")
    assert env.task_names == ("block2block", "block2absolutelocation", "separate")
    assert env.blocks == T.BLOCK_SETS["BLOCK_4"] and len(T.BLOCK_SETS["BLOCK_8"]) == 8


def test_reset_samples_a_task_from_the_seed_and_starts_at_rest(env8):
    obs = env8.reset(11, render=False)
    task = env8.task
    assert task.family in env8.task_names and obs.images == {}
    assert env8.time_s == 0.0 and np.allclose(obs.proprio, (0.3, -0.2), atol=1e-3)
    assert env8.reset(11, render=False) is not None and env8.task == task
    families = {env8.sample_task(np.random.default_rng(s)).family for s in range(30)}
    assert families == set(env8.task_names)
    env8.step(np.zeros(2))
    env8.step(np.zeros(2))
    assert env8.time_s == pytest.approx(0.2)
    for name, p in env8.block_positions().items():   # all inside the workspace, none overlapping
        assert T.X_MIN <= p[0] <= T.X_MAX and T.Y_MIN <= p[1] <= T.Y_MAX, name


def test_same_seed_gives_bitwise_same_states_and_images(frame_env):
    other = LanguageTableEnv("BLOCK_8")
    try:
        actions = np.random.default_rng(0).uniform(-0.1, 0.1, size=(12, 2))
        runs = []
        for e in (frame_env, other):
            o = e.reset(5)
            for a in actions:
                e.step(a)
            runs.append((e.task, o.images["top"], e.state(), e.observe().images["top"]))
        (t1, i1, s1, j1), (t2, i2, s2, j2) = runs
        assert t1 == t2
        assert np.array_equal(i1, i2) and np.array_equal(s1, s2) and np.array_equal(j1, j2)
        other.reset(5, render=False)
        start5 = other.state()
        other.reset(6, render=False)
        assert not np.array_equal(other.state(), start5)           # another seed, another scene
    finally:
        other.close()


# --- instructions and success ------------------------------------------------------------------

def test_instruction_wording_and_params():
    blocks8, blocks4 = T.BLOCK_SETS["BLOCK_8"], T.BLOCK_SETS["BLOCK_4"]
    assert T.instruction_for("block2block", {"block": "red_moon", "target": "blue_cube"}, blocks8) == \
        "push the red moon to the blue cube"
    assert T.instruction_for("block2absolutelocation", {"block": "red_moon", "location": "top_left"}, blocks8) == \
        "push the red moon to the top left"
    assert T.instruction_for("separate", {"block": "red_moon", "avoid": "blue_cube"}, blocks8) == \
        "separate the red moon from the blue cube"
    assert T.block_synonyms("red_moon", blocks8) == ["red moon"]          # two reds, two moons on BLOCK_8
    assert T.block_synonyms("red_moon", blocks4) == ["red block", "moon", "red moon"]
    rng = np.random.default_rng(0)
    verbs = set()
    for _ in range(200):
        task = T.sample_task(rng, blocks4)
        T.validate_params(task.family, task.params, blocks4)
        verbs.add(task.instruction.split()[0])
        if task.family == "block2block":
            assert any(f" {p} the " in task.instruction for p in T.PREPOSITIONS)
    assert {"push", "move", "slide", "put"} <= verbs


def test_block2block_success_on_constructed_states():
    params = {"block": "red_moon", "target": "blue_cube"}
    assert T.success("block2block", params, {"red_moon": (0.30, 0.0), "blue_cube": (0.30, 0.045)})   # touching
    assert not T.success("block2block", params, {"red_moon": (0.30, 0.0), "blue_cube": (0.30, 0.055)})


def test_block2absolutelocation_success_on_constructed_states():
    params = {"block": "red_moon", "location": "top_left"}
    corner = np.array(T.LOCATIONS["top_left"])
    assert tuple(corner) == (T.X_MIN, T.Y_MIN)
    assert T.success("block2absolutelocation", params, {"red_moon": corner + (0.06, 0.06)})
    assert not T.success("block2absolutelocation", params, {"red_moon": corner + (0.1, 0.1)})
    center = {"block": "red_moon", "location": "center"}
    assert T.success("block2absolutelocation", center, {"red_moon": (T.CENTER_X + 0.09, T.CENTER_Y)})
    assert not T.success("block2absolutelocation", center, {"red_moon": (T.CENTER_X + 0.11, T.CENTER_Y)})


def test_separate_success_on_constructed_states():
    params = {"block": "red_moon", "avoid": "blue_cube"}
    assert T.success("separate", params, {"red_moon": (0.30, 0.0), "blue_cube": (0.30, 0.16)})
    assert not T.success("separate", params, {"red_moon": (0.30, 0.0), "blue_cube": (0.30, 0.07)})


def test_separate_scenes_start_with_the_pair_close(env8):
    for seed in range(5):
        task = env8.sample_task(np.random.default_rng(seed), "separate")
        env8.reset(seed, task, render=False)
        pos = env8.block_positions()
        assert np.linalg.norm(pos[task.params["block"]] - pos[task.params["avoid"]]) < T.SEPARATE_START_DISTANCE
        assert not env8.is_success()


def test_unknown_names_raise_with_the_valid_ones(env):
    with pytest.raises(ValueError, match="block2block, block2absolutelocation, separate"):
        env.sample_task(np.random.default_rng(0), "stack")
    with pytest.raises(ValueError, match="blue_cube, green_star, red_moon, yellow_pentagon"):
        env.reset(0, b2b("red_moon", "purple_pole"))
    with pytest.raises(ValueError, match="red_pentagon"):        # on BLOCK_8, not on this BLOCK_4 table
        env.reset(0, b2b("red_pentagon", "blue_cube"))
    with pytest.raises(ValueError, match="top_left"):
        env.reset(0, TaskSpec("x", "block2absolutelocation", {"block": "red_moon", "location": "moon"}))
    with pytest.raises(ValueError, match="BLOCK_4, BLOCK_8"):
        LanguageTableEnv("BLOCK_5")
    with pytest.raises(ValueError, match="valid"):
        T.success("block2block", {"block": "red_moon", "target": "nope"}, {"red_moon": (0, 0)})


# --- actions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.array([np.nan, 0.0]), np.array([0.0, np.inf]), np.zeros(3), np.zeros(1),
                                 np.zeros((1, 2)), np.zeros((2, 2)), [0.1]])
def test_bad_actions_raise_and_leave_the_scene_untouched(env, bad):
    env.reset(1, render=False)
    env.step(np.array([0.05, 0.0]))
    before, t = env.state(), env.time_s
    with pytest.raises(ValueError):
        env.step(bad)
    assert np.array_equal(env.state(), before) and env.time_s == t


def test_actions_are_clipped_and_the_effector_stays_in_the_workspace(env):
    env.set_scene(FAR, effector=(0.35, 0.0))
    env.step(np.array([0.5, -3.0]))                          # clipped to (0.1, -0.1)
    assert np.allclose(env.effector_target, (0.45, -0.1))
    assert np.allclose(env.effector_position(), (0.45, -0.1), atol=0.005)
    for _ in range(8):
        env.step(np.array([0.1, 0.1]))
    assert np.allclose(env.effector_target, (T.X_MAX, T.Y_MAX))
    assert np.all(env.effector_position() <= np.array([T.X_MAX, T.Y_MAX]) + 0.003)


def test_full_speed_push_moves_the_block_without_tunnelling(env):
    for block in ("blue_cube", "red_moon", "green_star", "yellow_pentagon"):
        scene = dict(FAR)
        scene[block] = (0.35, 0.0, 0.3)
        # put the parked block that this one displaced somewhere harmless
        scene = {b: (p if b == block or np.linalg.norm(np.array(p[:2]) - (0.35, 0.0)) > 0.1 else (0.2, 0.0))
                 for b, p in scene.items()}
        env.set_scene(scene, effector=(0.35, -0.15))
        for _ in range(3):                                     # 0.3 m at the 0.1 limit, through the block
            env.step(np.array([0.0, 0.1]))
            eff, blk = env.effector_position(), env.block_poses()[block]
            assert eff[1] < blk[1] - 0.02, (block, eff, blk)     # still behind the block, never through it
        assert env.block_positions()[block][1] > 0.12, block    # pushed along
        assert abs(env.block_poses()[block][2]) < 0.01, block   # still on the board


def test_walls_keep_blocks_on_the_board(env):
    from efm_sim.language_table.env import WALL_GAP
    env.set_scene(FAR | {"blue_cube": (0.35, 0.25)}, effector=(0.35, 0.15))
    for _ in range(10):                                          # ram it into the right wall at full speed
        env.step(np.array([0.0, 0.1]))
    y = env.block_positions()["blue_cube"][1]
    assert T.Y_MAX < y < T.Y_MAX + WALL_GAP and abs(env.block_poses()["blue_cube"][2]) < 0.01


def test_blocks_slide_then_stop(env):
    env.set_scene(FAR | {"blue_cube": (0.35, 0.0)}, effector=(0.35, -0.08))
    for _ in range(2):
        env.step(np.array([0.0, 0.05]))
    for _ in range(10):
        env.step(np.zeros(2))
    p1 = env.block_positions()["blue_cube"].copy()
    env.step(np.zeros(2))
    assert p1[1] > 0.03 and np.allclose(env.block_positions()["blue_cube"], p1, atol=1e-4)


# --- oracle ------------------------------------------------------------------------------------

def test_oracle_solves_block2block(env8):
    oracle = LanguageTableOracle(env8, noise=0.0, seed=0)
    results = [run_episode(env8, oracle, seed, "block2block")[0] for seed in range(10)]
    assert sum(results) >= 8, results


@pytest.mark.parametrize("family", ["block2absolutelocation", "separate"])
def test_oracle_solves_the_other_families(env8, family):
    oracle = LanguageTableOracle(env8, noise=0.0, seed=0)
    results = [run_episode(env8, oracle, seed, family)[0] for seed in range(5)]
    assert sum(results) >= 4, results


def test_noisy_oracle_acts_within_the_limits(env8):
    with pytest.raises(ValueError):
        LanguageTableOracle(env8, noise=1.5)
    oracle = LanguageTableOracle(env8, noise=1.0, seed=3)
    env8.reset(2, render=False)
    oracle.reset()
    for _ in range(20):
        chunk = oracle.act()
        assert chunk.shape == (1, 2) and np.all(np.abs(chunk) <= 0.1)
        env8.step(chunk[0])


# --- camera ------------------------------------------------------------------------------------

COLOUR_TESTS = {
    "red": lambda im: (im[..., 0] > 150) & (im[..., 1] < 90) & (im[..., 2] < 90),
    "blue": lambda im: (im[..., 2] > 150) & (im[..., 0] < 90) & (im[..., 1] < 140),
    "green": lambda im: (im[..., 1] > 130) & (im[..., 0] < 90) & (im[..., 2] < 110),
    "yellow": lambda im: (im[..., 0] > 170) & (im[..., 1] > 150) & (im[..., 2] < 90),
}


def test_image_shows_every_block_colour(frame_env):
    image = frame_env.observe().images["top"]
    assert image.shape == (180, 320, 3) and image.dtype == np.uint8
    assert image.std() > 10
    for colour, test in COLOUR_TESTS.items():
        assert test(image).sum() >= 20, colour      # each colour has two ~13x13 px blocks


def test_image_top_left_is_the_top_left_location(frame_env):
    scene = {b: (0.375 + 0.04 * (i % 2), -0.1 + 0.06 * (i // 2)) for i, b in enumerate(frame_env.blocks)}
    scene["red_moon"] = (T.X_MIN + 0.03, T.Y_MIN + 0.03)     # near LOCATIONS["top_left"]
    scene["red_pentagon"] = (T.X_MAX - 0.03, T.Y_MAX - 0.03)  # near LOCATIONS["bottom_right"]
    frame_env.set_scene(scene, effector=(0.375, 0.2))
    red = COLOUR_TESTS["red"](frame_env.observe().images["top"])
    ys, xs = np.nonzero(red)
    top_left = (ys < 90) & (xs < 160)
    bottom_right = (ys >= 90) & (xs >= 160)
    assert top_left.sum() >= 10 and bottom_right.sum() >= 10 and (top_left | bottom_right).all()
