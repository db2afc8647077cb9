"""LanguageTable in MuJoCo: a cylindrical pusher moves coloured blocks on a board (10 Hz, 2-D actions).

A re-implementation of google-research/language-table's simulator (PyBullet there) with the same
workspace, block sets, action space, image size and instruction families; the MJCF is built in code,
no asset files. See ``tasks.py`` for the coordinate convention (image top = X_MIN, image left =
Y_MIN) and the success definitions.

Control: an action is a delta (metres) of the effector *target*, clipped to [-0.1, 0.1] per axis;
the target is clamped to the workspace. Over the 0.1 s control step the reference moves linearly
from the previous target to the new one (so at most 1 m/s) and a force-limited PD servo with velocity
feed-forward on two slide joints makes the effector follow it through ``SUBSTEPS`` = 25 physics steps
of 4 ms: at most 4 mm per physics step, far below the 3 cm pusher and 3.6-4.7 cm blocks, so nothing
tunnels. The effector floats 1 mm above the board (it collides with blocks only); blocks have
free joints and slide on the board with Coulomb friction. Low walls 5.5 cm outside the workspace keep
blocks on the board while leaving the pusher room to get behind a block against a wall.
For speed each block rests on the board through one hidden square "foot" (4 contacts) while its
visible convex pieces (cube: a box; pentagon: a prism; star: a pentagon and five point prisms;
moon: five prisms along a crescent) collide with the pusher, walls and other blocks.

Renders offscreen with ``mujoco.Renderer`` (set ``MUJOCO_GL=egl`` or ``osmesa`` on headless machines);
the renderer is made on the first image, so an env used without images never touches OpenGL.
"""
from __future__ import annotations

import math

import mujoco
import numpy as np

from ..env import Observation, SimEnv, TaskSpec
from . import tasks as T

TIMESTEP = 0.004
CONTROL_HZ = 10.0
SUBSTEPS = round(1.0 / (CONTROL_HZ * TIMESTEP))        # 25
SETTLE_STEPS = 15                                      # physics steps after placing blocks on reset
ACTION_LIMIT = 0.1

EFFECTOR_RADIUS = 0.015
EFFECTOR_START = (0.3, -0.2)                           # LanguageTable's initial effector xy
BLOCK_HEIGHT = 0.025
BLOCK_MASS = 0.05
WALL_GAP = 0.055                                       # wall inner face beyond the workspace edge
SPAWN_INSET = 0.05                                     # initial block centres this far inside
SPAWN_MIN_DIST = 0.07                                  # between initial block centres
SPAWN_EFFECTOR_DIST = 0.06                             # initial block centre to effector start

RGBA = {
    "red": (0.90, 0.12, 0.12, 1), "blue": (0.12, 0.32, 0.95, 1),
    "green": (0.10, 0.72, 0.22, 1), "yellow": (0.98, 0.86, 0.10, 1),
}

KP, KV, FORCE_LIMIT = 3000.0, 110.0, 30.0              # effector servo (1 kg effector)


# --- block shapes: lists of convex prisms (2-D outlines, metres, centred on the shape's centroid) ---

def _regular(n: int, r: float, phase: float = math.pi / 2) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star() -> list[np.ndarray]:
    outer, inner = 0.0235, 0.0115
    a_out = math.pi / 2 + 2 * math.pi * np.arange(5) / 5
    a_in = a_out + math.pi / 5
    pin = np.stack([inner * np.cos(a_in), inner * np.sin(a_in)], axis=1)
    pout = np.stack([outer * np.cos(a_out), outer * np.sin(a_out)], axis=1)
    pieces = [pin]
    for k in range(5):
        pieces.append(np.stack([pin[k - 1], pout[k], pin[k]]))
    return pieces


def _moon() -> list[np.ndarray]:
    r1, r2, dx = 0.022, 0.019, 0.013              # outer disk minus a disk offset by dx along +x
    xi = (r1 ** 2 - r2 ** 2 + dx ** 2) / (2 * dx)
    yi = math.sqrt(r1 ** 2 - xi ** 2)
    a1 = math.atan2(yi, xi)                        # outer arc: a1 .. 2pi - a1 (through pi)
    b1 = math.atan2(yi, xi - dx)                   # inner arc on the cut circle: b1 .. 2pi - b1
    n = 5
    t = np.linspace(0.0, 1.0, n + 1)
    ao = a1 + t * (2 * math.pi - 2 * a1)
    ai = b1 + t * (2 * math.pi - 2 * b1)
    po = np.stack([r1 * np.cos(ao), r1 * np.sin(ao)], axis=1)
    pi_ = np.stack([dx + r2 * np.cos(ai), r2 * np.sin(ai)], axis=1)
    pieces = [np.stack([po[i], po[i + 1], pi_[i + 1], pi_[i]]) for i in range(n)]
    # centre on the crescent's area centroid
    area, cx = 0.0, 0.0
    for q in pieces:
        x, y = q[:, 0], q[:, 1]
        cross = x * np.roll(y, -1) - np.roll(x, -1) * y
        a = cross.sum() / 2
        area += a
        cx += ((x + np.roll(x, -1)) * cross).sum() / 6
    shift = np.array([cx / area, 0.0])
    return [q - shift for q in pieces]


SHAPE_PIECES: dict[str, list[np.ndarray]] = {
    "cube": [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * 0.018],
    "pentagon": [_regular(5, 0.022)],
    "star": _star(),
    "moon": _moon(),
}


def _prism_vertices(outline: np.ndarray) -> str:
    pts = [(x, y, z) for z in (0.0, BLOCK_HEIGHT) for x, y in outline]
    return " ".join(f"{v:.6f}" for p in pts for v in p)


def build_mjcf(blocks: tuple[str, ...]) -> str:
    """The scene's MJCF: board, walls, camera "top", pusher, and one body per block."""
    xc, yc = T.CENTER_X, T.CENTER_Y
    hx = (T.X_MAX - T.X_MIN) / 2 + WALL_GAP         # wall inner faces (half extents)
    hy = (T.Y_MAX - T.Y_MIN) / 2 + WALL_GAP
    wt, wh = 0.012, 0.03                           # wall half-thickness, height
    half_view = (T.X_MAX - T.X_MIN) / 2 + WALL_GAP + 2 * wt + 0.005
    cam_h = 1.0
    fovy = math.degrees(2 * math.atan(half_view / cam_h))

    meshes, bodies = [], []
    for name in blocks:
        color, shape = name.split("_")
        geoms = []
        rgba = " ".join(map(str, RGBA[color]))
        for i, outline in enumerate(SHAPE_PIECES[shape]):
            if shape == "cube":
                geoms.append(f'<geom name="{name}" type="box" size="0.018 0.018 {BLOCK_HEIGHT / 2}" '
                             f'pos="0 0 {BLOCK_HEIGHT / 2}" class="block" rgba="{rgba}"/>')
                continue
            mesh = f"{name}_{i}"
            meshes.append(f'<mesh name="{mesh}" vertex="{_prism_vertices(outline)}"/>')
            geoms.append(f'<geom name="{mesh}" type="mesh" mesh="{mesh}" class="block" rgba="{rgba}"/>')
        bodies.append(f"""
    <body name="{name}" pos="{xc} {yc} 0">
      <freejoint name="{name}"/>
      <inertial pos="0 0 {BLOCK_HEIGHT / 2}" mass="{BLOCK_MASS}" diaginertia="1.2e-5 1.2e-5 1.6e-5"/>
      <geom name="{name}_foot" class="foot" size="0.015 0.015 0.004" pos="0 0 0.004"/>
      {''.join(geoms)}
    </body>""")

    walls = "\n".join([
        f'<geom name="wall_top" type="box" size="{wt} {hy + 2 * wt} {wh / 2}" pos="{xc - hx - wt} {yc} {wh / 2}" class="wall"/>',
        f'<geom name="wall_bottom" type="box" size="{wt} {hy + 2 * wt} {wh / 2}" pos="{xc + hx + wt} {yc} {wh / 2}" class="wall"/>',
        f'<geom name="wall_left" type="box" size="{hx} {wt} {wh / 2}" pos="{xc} {yc - hy - wt} {wh / 2}" class="wall"/>',
        f'<geom name="wall_right" type="box" size="{hx} {wt} {wh / 2}" pos="{xc} {yc + hy + wt} {wh / 2}" class="wall"/>',
    ])
    return f"""
<mujoco model="language_table">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" gravity="0 0 -9.81"/>
  <visual>
    <global offwidth="640" offheight="360"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.45 0.45 0.45" specular="0.05 0.05 0.05"/>
    <quality shadowsize="0"/>
  </visual>
  <default>
    <!-- collision bits: the board touches only block feet (bit 0); block shapes, walls and the
         effector touch block shapes (bit 1). So each block rests on one box (4 contacts) and pushes
         and collisions use its real outline. -->
    <default class="block">
      <geom contype="2" conaffinity="2" friction="0.3 0.005 0.0001" condim="3"/>
    </default>
    <default class="foot">
      <geom type="box" contype="0" conaffinity="1" group="3" rgba="0 0 0 0" friction="0.5 0.005 0.0001"
            condim="3"/>
    </default>
    <default class="wall">
      <geom contype="2" conaffinity="0" rgba="0.42 0.32 0.22 1" friction="0.3 0.005 0.0001"/>
    </default>
  </default>
  <asset>
    {''.join(meshes)}
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="{xc} {yc} 2" dir="0 0 -1" diffuse="0.35 0.35 0.35" castshadow="false"/>
    <camera name="top" pos="{xc} {yc} {cam_h}" xyaxes="0 1 0 -1 0 0" fovy="{fovy:.4f}"/>
    <geom name="table" type="plane" size="2 2 0.1" rgba="0.23 0.2 0.18 1" contype="0" conaffinity="0"/>
    <geom name="board" type="box" size="{hx} {hy} 0.005" pos="{xc} {yc} -0.005" rgba="0.62 0.62 0.6 1"
          contype="1" conaffinity="0" friction="0.5 0.005 0.0001"/>
    {walls}
    <body name="effector" pos="0 0 {0.001 + 0.03}">
      <joint name="effector_x" type="slide" axis="1 0 0"/>
      <joint name="effector_y" type="slide" axis="0 1 0"/>
      <inertial pos="0 0 0" mass="1" diaginertia="1e-3 1e-3 1e-3"/>
      <geom name="effector" type="cylinder" size="{EFFECTOR_RADIUS} 0.03" rgba="0.95 0.95 0.95 1"
            contype="2" conaffinity="0" friction="0.2 0.005 0.0001"/>
      <geom name="effector_cap" type="cylinder" size="{EFFECTOR_RADIUS * 0.45} 0.0305" rgba="0.15 0.15 0.15 1"
            contype="0" conaffinity="0"/>
    </body>
    {''.join(bodies)}
  </worldbody>
  <actuator>
    <general name="effector_x" joint="effector_x" gainprm="1" biastype="affine" biasprm="0 -{KP} -{KV}"
             forcerange="-{FORCE_LIMIT} {FORCE_LIMIT}"/>
    <general name="effector_y" joint="effector_y" gainprm="1" biastype="affine" biasprm="0 -{KP} -{KV}"
             forcerange="-{FORCE_LIMIT} {FORCE_LIMIT}"/>
  </actuator>
</mujoco>
"""


class LanguageTableEnv(SimEnv):
    """LanguageTable: push blocks on a board with a cylindrical effector.

    ``block_set``: "BLOCK_8" (red moon, red pentagon, blue moon, blue cube, green cube, green star,
    yellow star, yellow pentagon) or "BLOCK_4" (red moon, blue cube, green star, yellow pentagon).
    """

    name = "language_table"
    control_hz = CONTROL_HZ
    proprio_topic = "effector"
    policy_hz = 10.0
    action_dim = 2
    chunk_size = 1
    camera_names = ("top",)
    image_size = {"top": (180, 320)}  # noqa: RUF012 (declared by SimEnv)
    proprio_names = ("x", "y")
    max_policy_steps = 200
    task_names = T.TASK_NAMES

    def __init__(self, block_set: str = "BLOCK_8") -> None:
        self.block_set = block_set
        self.blocks: tuple[str, ...] = T.check_block_set(block_set)
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.blocks))
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        self._qadr = {b: int(self.model.jnt_qposadr[self.model.joint(b).id]) for b in self.blocks}
        self._eff_q = [int(self.model.jnt_qposadr[self.model.joint(j).id]) for j in ("effector_x", "effector_y")]
        self._target = np.array(EFFECTOR_START, dtype=np.float64)
        self._task: TaskSpec | None = None
        self._steps = 0
        self._lo = np.array([T.X_MIN, T.Y_MIN])
        self._hi = np.array([T.X_MAX, T.Y_MAX])

    # --- SimEnv -------------------------------------------------------------------------------

    def sample_task(self, rng: np.random.Generator, task_name: str | None = None) -> TaskSpec:
        return T.sample_task(rng, self.blocks, task_name)

    def reset(self, seed: int, task: TaskSpec | None = None, render: bool = True) -> Observation:
        """New scene for ``seed`` (and ``task``, sampled from ``seed`` when None); ``render=False``
        leaves the camera image out of the returned observation (no renderer is created)."""
        rng = np.random.default_rng(seed)
        if task is None:
            task = self.sample_task(rng)
        else:
            T.validate_params(task.family, task.params, self.blocks)
        for _ in range(1000):
            layout = self._sample_layout(rng, task)
            if layout is not None and not T.task_success(task, layout):
                break
        else:  # practically unreachable: 1000 rejected layouts
            raise RuntimeError(f"could not sample a start state for {task}")
        yaws = rng.uniform(-math.pi, math.pi, size=len(self.blocks))
        self._task = task
        self.set_scene({b: (*layout[b], yaw) for b, yaw in zip(self.blocks, yaws)}, EFFECTOR_START)
        return self.observe(render)

    def step(self, action: np.ndarray) -> None:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"action must have shape (2,) (dx, dy in metres), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a.tolist()}")
        a = np.clip(a, -ACTION_LIMIT, ACTION_LIMIT)
        start = self._target
        end = np.clip(start + a, self._lo, self._hi)
        vel = (end - start) * CONTROL_HZ
        d, m = self.data, self.model
        for i in range(1, SUBSTEPS + 1):
            ref = start + (end - start) * (i / SUBSTEPS)
            d.ctrl[:] = KP * ref + KV * vel
            mujoco.mj_step(m, d)
        d.ctrl[:] = KP * end                       # hold (no feed-forward) between steps
        self._target = end
        self._steps += 1

    def observe(self, render: bool = True) -> Observation:
        images = {"top": self.render()} if render else {}
        return Observation(images=images, proprio=self.effector_position())

    def is_success(self) -> bool:
        return T.task_success(self.task, self.block_positions())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- privileged state (oracle, tests) -------------------------------------------------------

    def render(self) -> np.ndarray:
        if self._renderer is None:
            h, w = self.image_size["top"]
            self._renderer = mujoco.Renderer(self.model, height=h, width=w)
        self._renderer.update_scene(self.data, camera="top")
        return self._renderer.render().copy()

    def effector_position(self) -> np.ndarray:
        return self.data.qpos[self._eff_q].astype(np.float64).copy()

    @property
    def effector_target(self) -> np.ndarray:
        return self._target.copy()

    def block_positions(self) -> dict[str, np.ndarray]:
        q = self.data.qpos
        return {b: q[a:a + 2].copy() for b, a in self._qadr.items()}

    def block_poses(self) -> dict[str, np.ndarray]:
        """name -> (x, y, z, yaw)."""
        out = {}
        for b, a in self._qadr.items():
            w, x, y, z = self.data.qpos[a + 3:a + 7]
            yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
            out[b] = np.array([*self.data.qpos[a:a + 3], yaw])
        return out

    def set_scene(self, blocks: dict[str, tuple[float, ...]], effector: tuple[float, float] = EFFECTOR_START) -> None:
        """Place every block at (x, y) or (x, y, yaw) and the effector (at rest, target = position),
        let the blocks settle for a few physics steps, and restart the clock. The task is kept.
        Missing blocks: ValueError."""
        missing = set(self.blocks) - set(blocks)
        unknown = set(blocks) - set(self.blocks)
        if missing or unknown:
            raise ValueError(f"set_scene needs exactly the blocks {', '.join(self.blocks)}; "
                             f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        d, m = self.data, self.model
        mujoco.mj_resetData(m, d)
        for b in self.blocks:
            x, y, *rest = blocks[b]
            yaw = rest[0] if rest else 0.0
            a = self._qadr[b]
            d.qpos[a:a + 7] = (x, y, 0.0, math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        self._target = np.clip(np.asarray(effector, dtype=np.float64), self._lo, self._hi)
        d.qpos[self._eff_q] = self._target
        d.ctrl[:] = KP * self._target
        mujoco.mj_step(m, d, nstep=SETTLE_STEPS)
        d.time = 0.0
        self._steps = 0

    def state(self) -> np.ndarray:
        """Full physics state (qpos, qvel, effector target): equal arrays mean equal scenes."""
        return np.concatenate([self.data.qpos, self.data.qvel, self._target])

    # --- scene sampling -----------------------------------------------------------------------

    def _sample_layout(self, rng: np.random.Generator, task: TaskSpec) -> dict[str, np.ndarray] | None:
        lo = self._lo + SPAWN_INSET
        hi = self._hi - SPAWN_INSET
        eff = np.array(EFFECTOR_START)
        placed: dict[str, np.ndarray] = {}

        def free(p, min_dist=SPAWN_MIN_DIST):
            return (np.linalg.norm(p - eff) >= SPAWN_EFFECTOR_DIST
                    and all(np.linalg.norm(p - q) >= min_dist for q in placed.values()))

        order = list(self.blocks)
        if task.family == "separate":
            a, b = task.params["block"], task.params["avoid"]
            for _ in range(100):
                pa = rng.uniform(lo, hi)
                ang = rng.uniform(-math.pi, math.pi)
                pb = pa + rng.uniform(0.055, T.SEPARATE_START_DISTANCE - 0.005) * np.array([math.cos(ang), math.sin(ang)])
                if np.all(pb >= lo) and np.all(pb <= hi) and free(pa) and np.linalg.norm(pb - eff) >= SPAWN_EFFECTOR_DIST:
                    placed[a], placed[b] = pa, pb
                    break
            else:
                return None
            order = [n for n in order if n not in placed]
        for name in order:
            for _ in range(200):
                p = rng.uniform(lo, hi)
                if free(p):
                    placed[name] = p
                    break
            else:
                return None
        if task.family == "block2block" and np.linalg.norm(
                placed[task.params["block"]] - placed[task.params["target"]]) < T.BLOCK2BLOCK_START_DISTANCE:
            return None
        return {n: placed[n] for n in self.blocks}
