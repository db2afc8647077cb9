"""Bimanual ViperX (ALOHA) in MuJoCo, on the MJCF scenes that the installed ``gym-aloha`` package ships.

Two tasks, as in gym-aloha and ACT: ``transfer_cube`` (the right arm picks up a red cube and hands it to
the left arm) and ``insertion`` (the left arm picks up the blue socket, the right arm the red peg, and
the peg goes into the socket). The scenes are read from the package folder, never copied.

Action and proprio (14 values, gym-aloha's order): per arm, left then right, six absolute joint
positions (waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate; radians) and the gripper,
normalised 0 (closed) .. 1 (open) over the finger travel. Arm joints are clipped to their limits, the
gripper to [0, 1]. One control step is 0.02 s (50 Hz) = 10 physics steps of the asset's 0.002 s.

Object poses: x, y drawn from ``np.random.RandomState(seed)`` over gym-aloha's ranges, in its order, so
seed N puts the objects where gym-aloha's ``reset(seed=N)`` does; like there, they start at z = 0.05 and
settle onto the table during the first control steps.

Success (ground truth, on the current contacts, as gym-aloha's rewards): transfer_cube when the cube
touches a finger of the left gripper and neither the table nor the right gripper (gym-aloha's reward 4,
plus "the right arm has let go"); insertion when the peg touches the pin inside the socket (reward 4), to
within 1 mm so that a peg resting on the pin does not flicker in and out of success.
``stage()`` gives gym-aloha's 0..4 reward itself.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import mujoco  # efm_sim/__init__ has already chosen offscreen EGL unless MUJOCO_GL was set
import numpy as np

from ..env import Observation, SimEnv, TaskSpec

SCENE_FILES = {"transfer_cube": "bimanual_viperx_transfer_cube.xml", "insertion": "bimanual_viperx_insertion.xml"}
INSTRUCTIONS = {"transfer_cube": "transfer the cube to the other arm", "insertion": "insert the peg into the socket"}
ARMS = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
JOINT_NAMES = tuple(f"{arm}_arm_{j}" for arm in ARMS for j in (*ARM_JOINTS, "gripper"))
# every camera the scenes define; wrist cameras ride on the gripper links (narrow 20 degree view)
CAMERAS = ("top", "angle", "front_close", "left_pillar", "right_pillar", "left_wrist", "right_wrist")
DEFAULT_CAMERAS = ("top", "angle")
# render settings: the scenes ask for 4096 px shadow maps and 4x multisampling, which software (CPU)
# OpenGL renders at ~85 ms per 240x320 frame; "fast" keeps the shadows at a quarter of the cost
RENDER_QUALITY = {          # name: (shadow map size, multisamples, shadows); None: as the scene says
    "asset": (None, None, True),  # exactly as gym-aloha renders (4096, 4)
    "fast": (1024, 0, True),
    "flat": (1024, 0, False),   # no shadows: ~7 ms per frame in software
}

START_ARM_QPOS = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0)  # both arms folded up, as gym-aloha starts them
START_FINGER = 0.02239                                # finger slide position at the start (metres)
FINGER_CLOSED, FINGER_OPEN = 0.01844, 0.05800          # gripper 0 and 1 (gym-aloha's puppet normalisation)

# gym-aloha's sampling ranges (x, y); z is fixed at 0.05, orientation upright
CUBE_RANGE = ((0.0, 0.2), (0.4, 0.6))
PEG_RANGE = ((0.1, 0.2), (0.4, 0.6))
SOCKET_RANGE = ((-0.2, -0.1), (0.4, 0.6))
DROP_HEIGHT = 0.05
SOCKET_GEOMS = ("socket-1", "socket-2", "socket-3", "socket-4")
PIN_TOLERANCE = 0.001  # metres between peg and pin that still count as touching


def assets_dir() -> Path:
    """The ``assets`` folder inside the installed gym_aloha package, found without importing it."""
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the Aloha environment needs the gym-aloha package for its MuJoCo scenes: "
                                  "pip install 'gym-aloha==0.1.5'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not (folder / SCENE_FILES["transfer_cube"]).is_file():
        raise FileNotFoundError(f"gym_aloha is installed but {folder} holds no {SCENE_FILES['transfer_cube']}")
    return folder


def gripper_to_finger(g):
    """Normalised gripper (0 closed, 1 open) -> finger slide position in metres."""
    return FINGER_CLOSED + np.asarray(g) * (FINGER_OPEN - FINGER_CLOSED)


def finger_to_gripper(x):
    return (np.asarray(x) - FINGER_CLOSED) / (FINGER_OPEN - FINGER_CLOSED)


def start_action() -> np.ndarray:
    """The 14-D action that holds the start pose."""
    arm = [*START_ARM_QPOS, float(finger_to_gripper(START_FINGER))]
    return np.array(arm + arm)


def sample_object_poses(task: str, seed: int) -> dict[str, np.ndarray]:
    """Initial free-joint poses (x y z qw qx qy qz) of the task's objects for ``seed``."""
    rng = np.random.RandomState(seed % 2**32)

    def draw(ranges):
        lo, hi = np.array([*(r[0] for r in ranges), DROP_HEIGHT]), np.array([*(r[1] for r in ranges), DROP_HEIGHT])
        return np.concatenate([rng.uniform(lo, hi), [1.0, 0.0, 0.0, 0.0]])

    if task == "transfer_cube":
        return {"red_box_joint": draw(CUBE_RANGE)}
    peg = draw(PEG_RANGE)  # the peg first, then the socket, as gym-aloha draws them
    return {"red_peg_joint": peg, "blue_socket_joint": draw(SOCKET_RANGE)}


@dataclass
class _Scene:
    """One task's compiled model, its state and the ids the env needs, plus a renderer made on demand."""
    model: mujoco.MjModel
    data: mujoco.MjData
    arm_qpos: np.ndarray      # qpos addresses of the 12 arm joints, left then right
    finger_qpos: np.ndarray   # qpos addresses of the (left_finger, right_finger) slide joint of each arm
    arm_range: np.ndarray     # (12, 2) joint limits
    object_qpos: dict[str, int]
    geom: dict[str, int]
    renderer: mujoco.Renderer | None = None


def _load_scene(task: str, image_size: tuple[int, int], quality: str) -> _Scene:
    model = mujoco.MjModel.from_xml_path(str(assets_dir() / SCENE_FILES[task]))
    height, width = image_size
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    shadow_size, samples, _ = RENDER_QUALITY[quality]
    if shadow_size is not None:
        model.vis.quality.shadowsize, model.vis.quality.offsamples = shadow_size, samples
    joint = lambda name: model.joint(name)  # noqa: E731
    arm_joints = [joint(f"vx300s_{arm}/{j}") for arm in ARMS for j in ARM_JOINTS]
    objects = ["red_box_joint"] if task == "transfer_cube" else ["red_peg_joint", "blue_socket_joint"]
    geoms = ["table", *(f"vx300s_{arm}/10_{side}_gripper_finger" for arm in ARMS for side in ("left", "right"))]
    geoms += ["red_box"] if task == "transfer_cube" else ["red_peg", "pin", *SOCKET_GEOMS]
    if model.nu != 16:
        raise RuntimeError(f"{SCENE_FILES[task]}: expected 16 position actuators, found {model.nu}")
    return _Scene(
        model=model, data=mujoco.MjData(model),
        arm_qpos=np.array([j.qposadr[0] for j in arm_joints]),
        finger_qpos=np.array([joint(f"vx300s_{arm}/left_finger").qposadr[0] for arm in ARMS]),
        arm_range=np.array([j.range for j in arm_joints]),
        object_qpos={name: int(joint(name).qposadr[0]) for name in objects},
        geom={name: model.geom(name).id for name in geoms})


class AlohaEnv(SimEnv):
    name = "aloha"
    control_hz = 50.0
    policy_hz = 10.0
    action_dim = 14
    chunk_size = 5
    proprio_names = JOINT_NAMES
    max_policy_steps = 80   # 400 control steps = 8 s, the length of ACT's scripted Aloha episodes
    task_names = ("transfer_cube", "insertion")

    def __init__(self, image_size: tuple[int, int] = (240, 320), cameras: tuple[str, ...] | list[str] = DEFAULT_CAMERAS,
                 task: str | None = None, render_quality: str = "fast") -> None:
        """``image_size`` (height, width) of every camera; ``cameras`` among CAMERAS; ``task`` the family
        ``reset``/``sample_task`` choose when not told (None: either, at random); ``render_quality`` one
        of RENDER_QUALITY ("asset" renders exactly as gym-aloha, at several times the cost)."""
        cameras = tuple(cameras)
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown or not cameras:
            raise ValueError(f"unknown camera(s) {unknown}; available: {', '.join(CAMERAS)}")
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
        if task is not None and task not in self.task_names:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(self.task_names)}")
        if render_quality not in RENDER_QUALITY:
            raise ValueError(f"unknown render_quality {render_quality!r}; valid: {', '.join(RENDER_QUALITY)}")
        self.render_quality = render_quality
        self.camera_names = cameras
        self.image_size = {c: (height, width) for c in cameras}
        self.default_task = task
        self._size = (height, width)
        self._scenes: dict[str, _Scene] = {}
        self._scene: _Scene | None = None
        self._task: TaskSpec | None = None
        self._steps = 0
        self._last_action = start_action()
        self._substeps = 0

    # ---- SimEnv ------------------------------------------------------------------------------
    def sample_task(self, rng: np.random.Generator, task_name: str | None = None) -> TaskSpec:
        family = task_name or self.default_task
        if family is None:
            family = self.task_names[int(rng.integers(len(self.task_names)))]
        if family not in self.task_names:
            raise ValueError(f"unknown task {family!r}; valid: {', '.join(self.task_names)}")
        return TaskSpec(INSTRUCTIONS[family], family)

    def reset(self, seed: int, task: TaskSpec | None = None, render: bool = True) -> Observation:
        """New scene for ``seed`` (and ``task``, sampled from ``seed`` when None); ``render=False``
        leaves the images out of the returned observation (no renderer is created)."""
        task = task or self.sample_task(np.random.default_rng(seed))
        if task.family not in self.task_names:
            raise ValueError(f"unknown task {task.family!r}; valid: {', '.join(self.task_names)}")
        if task.family not in self._scenes:
            self._scenes[task.family] = _load_scene(task.family, self._size, self.render_quality)
        scene = self._scene = self._scenes[task.family]
        self._task = task
        model, data = scene.model, scene.data
        mujoco.mj_resetData(model, data)
        self._substeps = max(1, int(round(1.0 / self.control_hz / model.opt.timestep)))
        data.qpos[scene.arm_qpos] = np.tile(START_ARM_QPOS, 2)
        data.qpos[scene.finger_qpos] = START_FINGER
        data.qpos[scene.finger_qpos + 1] = -START_FINGER
        for name, pose in sample_object_poses(task.family, seed).items():
            adr = scene.object_qpos[name]
            data.qpos[adr:adr + 7] = pose
        self._steps = 0
        self._apply(start_action())
        mujoco.mj_forward(model, data)
        return self.observe(render)

    def step(self, action: np.ndarray) -> None:
        scene = self._require_scene()
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(f"aloha takes {self.action_dim} values per step, got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("non-finite value (NaN or inf) in the aloha action")
        self._apply(action)
        mujoco.mj_step(scene.model, scene.data, nstep=self._substeps)
        self._steps += 1

    def observe(self, render: bool = True) -> Observation:
        scene = self._require_scene()
        qpos = scene.data.qpos
        grippers = finger_to_gripper(qpos[scene.finger_qpos])
        proprio = np.concatenate([qpos[scene.arm_qpos[:6]], grippers[:1], qpos[scene.arm_qpos[6:]], grippers[1:]])
        images = {}
        if render:
            if scene.renderer is None:
                scene.renderer = mujoco.Renderer(scene.model, *self._size)
                scene.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = RENDER_QUALITY[self.render_quality][2]
            for camera in self.camera_names:
                scene.renderer.update_scene(scene.data, camera=camera)
                images[camera] = scene.renderer.render()
        return Observation(images, proprio.astype(np.float64))

    def is_success(self) -> bool:
        scene = self._require_scene()
        if self._task.family == "transfer_cube":
            touching = self._touching("red_box")
            left = bool(touching & self._finger_ids("left"))
            right = bool(touching & self._finger_ids("right"))
            return left and not right and scene.geom["table"] not in touching
        # the peg touches the pin (gym-aloha's reward 4), to within PIN_TOLERANCE: a peg pushed home
        # rests on the pin with contacts that come and go at a fraction of a millimetre
        gap = mujoco.mj_geomDistance(scene.model, scene.data, scene.geom["red_peg"], scene.geom["pin"],
                                     0.01, None)
        return bool(gap <= PIN_TOLERANCE)

    def stage(self) -> int:
        """gym-aloha's reward for the current contacts: 0..4, 4 being its success."""
        scene = self._require_scene()
        g = scene.geom
        left_finger, right_finger = {g["vx300s_left/10_left_gripper_finger"]}, {g["vx300s_right/10_right_gripper_finger"]}
        if self._task.family == "transfer_cube":
            box = self._touching("red_box")
            on_table = g["table"] in box
            reward = 0
            if box & right_finger:
                reward = 1 if on_table else 2
            if box & left_finger:
                reward = 3 if on_table else 4
            return reward
        peg = self._touching("red_peg")
        socket = set().union(*(self._touching(s) for s in SOCKET_GEOMS))
        if g["pin"] in peg:
            return 4
        airborne = g["table"] not in peg and g["table"] not in socket
        if peg & {g[s] for s in SOCKET_GEOMS} and airborne:
            return 3
        if peg & right_finger and socket & left_finger:
            return 2 if airborne else 1
        return 0

    def hold_action(self) -> np.ndarray:
        """The last commanded action (the start pose after a reset): joint targets, so holding = repeating."""
        return self._last_action.copy()

    def close(self) -> None:
        for scene in self._scenes.values():
            if scene.renderer is not None:
                scene.renderer.close()
                scene.renderer = None

    # ---- privileged access for oracles and tests ---------------------------------------------
    @property
    def model(self) -> mujoco.MjModel:
        return self._require_scene().model

    @property
    def data(self) -> mujoco.MjData:
        return self._require_scene().data

    @property
    def steps(self) -> int:
        """Control steps since reset."""
        return self._steps

    def object_pose(self, joint_name: str) -> np.ndarray:
        """Current pose (x y z qw qx qy qz) of a free object: red_box_joint, red_peg_joint, blue_socket_joint."""
        scene = self._require_scene()
        adr = scene.object_qpos[joint_name]
        return scene.data.qpos[adr:adr + 7].copy()

    # ---- internals ---------------------------------------------------------------------------
    def _require_scene(self) -> _Scene:
        if self._scene is None:
            raise RuntimeError("call reset() first")
        return self._scene

    def _apply(self, action: np.ndarray) -> None:
        """Clip to the limits and write the 16 actuator targets (each finger pair moves mirrored)."""
        scene = self._scene
        arms = np.concatenate([action[0:6], action[7:13]])
        arms = np.clip(arms, scene.arm_range[:, 0], scene.arm_range[:, 1])
        grippers = np.clip(action[[6, 13]], 0.0, 1.0)
        self._last_action = np.concatenate([arms[:6], grippers[:1], arms[6:], grippers[1:]])
        fingers = gripper_to_finger(grippers)
        ctrl = np.concatenate([arms[:6], [fingers[0], -fingers[0]], arms[6:], [fingers[1], -fingers[1]]])
        # gripper 0..1 spans a little more than the finger actuators allow (as in gym-aloha): clamp here
        lo, hi = scene.model.actuator_ctrlrange[:, 0], scene.model.actuator_ctrlrange[:, 1]
        scene.data.ctrl[:] = np.clip(ctrl, lo, hi)

    def _touching(self, geom_name: str) -> set[int]:
        """Ids of the geoms in contact with ``geom_name`` now."""
        scene = self._scene
        data, gid = scene.data, scene.geom[geom_name]
        if data.ncon == 0:
            return set()
        g1, g2 = data.contact.geom1, data.contact.geom2
        return set(g2[g1 == gid].tolist()) | set(g1[g2 == gid].tolist())

    def _finger_ids(self, arm: str) -> set[int]:
        return {self._scene.geom[f"vx300s_{arm}/10_{side}_gripper_finger"] for side in ("left", "right")}
