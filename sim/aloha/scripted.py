"""Scripted oracles for the Aloha tasks: end-effector waypoints turned into joint targets by inverse kinematics.

ACT's scripted policies drive mocap bodies welded to the grippers through timed waypoints. Our
environment takes joint positions, so here each arm follows timed waypoints for its tool centre point
(TCP: a point between the finger pads), and every control step the interpolated TCP pose is turned into
six joint angles by damped least squares on a scratch MjData of the env's model (``mj_jac``),
warm-started from the previous solution. The timings follow ACT's 400-step episodes.

Each waypoint's target is computed when the arm starts moving towards it, from the simulator's
privileged state (where the cube has settled, how the socket and peg sit in the hands), and the final
insertion servoes the peg onto the socket's axis with an integral term that removes the sag the joint
position control leaves. The peg (20 mm square) must enter a 36 mm hole, so open-loop waypoints alone
succeed only about half the time.

``noise`` in [0, 1] degrades it: a per-episode misjudgement of where the objects are, a slow wander of
the TCP targets, slowly varying joint errors and per-interval timing jitter (scales per oracle below).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mujoco
import numpy as np

from ..env import Oracle
from .env import ARMS, ARM_JOINTS, AlohaEnv

TCP_LOCAL = np.array([0.13, 0.0, 0.0])  # in gripper_link's frame, between the finger pads
TCP_TIP = 0.154                         # where the fingertips end along that axis
EPISODE_STEPS = 400                     # the oracle's plans fit in ACT's 400 control steps
PICK_PITCH = np.radians(60)             # transfer_cube: the right gripper points 60 degrees down, as in ACT

Pose = tuple[np.ndarray, np.ndarray]    # position, quaternion (w x y z)


# ---- small rotation helpers ------------------------------------------------------------------
def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_axis(axis, angle: float) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, float), float(angle))
    return out


def gripper_quat(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Gripper orientation: fingers along the rotated x axis; yaw about z, then pitch down, then roll."""
    return quat_mul(quat_mul(quat_axis([0, 0, 1], yaw), quat_axis([0, 1, 0], pitch)), quat_axis([1, 0, 0], roll))


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.empty(3)
    mujoco.mju_rotVecQuat(out, np.asarray(v, float), np.asarray(q, float))
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, f: float) -> np.ndarray:
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + f * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - f) * theta) * q0 + np.sin(f * theta) * q1) / np.sin(theta)


def compose(a: Pose, b: Pose) -> Pose:
    """Pose ``b`` given in the frame of ``a``, expressed in the world."""
    return a[0] + quat_rotate(a[1], b[0]), quat_mul(a[1], b[1])


def relative(a: Pose, b: Pose) -> Pose:
    """Pose ``b`` expressed in the frame of ``a``."""
    inv = quat_conj(a[1])
    return quat_rotate(inv, b[0] - a[0]), quat_mul(inv, b[1])


# ---- inverse kinematics ----------------------------------------------------------------------
class ArmIK:
    """Damped least squares IK of each arm's TCP pose, on a scratch MjData of the environment's model."""

    def __init__(self, model: mujoco.MjModel, damping: float = 0.03, rot_weight: float = 0.3) -> None:
        self.model, self.data = model, mujoco.MjData(model)
        self.damping, self.rot_weight = damping, rot_weight
        self.body = {arm: model.body(f"vx300s_{arm}/gripper_link").id for arm in ARMS}
        joints = {arm: [model.joint(f"vx300s_{arm}/{j}") for j in ARM_JOINTS] for arm in ARMS}
        self.qpos_adr = {arm: np.array([j.qposadr[0] for j in js]) for arm, js in joints.items()}
        self.dof_adr = {arm: np.array([j.dofadr[0] for j in js]) for arm, js in joints.items()}
        self.range = {arm: np.array([j.range for j in js]) for arm, js in joints.items()}
        self._jacp, self._jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))

    def tcp_pose(self, data: mujoco.MjData, arm: str) -> Pose:
        """The TCP pose in ``data`` (whose kinematics must be current)."""
        b = self.body[arm]
        return data.xpos[b] + data.xmat[b].reshape(3, 3) @ TCP_LOCAL, data.xquat[b].copy()

    def forward(self, arm: str, q: np.ndarray) -> Pose:
        self.data.qpos[self.qpos_adr[arm]] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.tcp_pose(self.data, arm)

    def solve(self, arm: str, q0: np.ndarray, target: Pose, iterations: int = 20) -> np.ndarray:
        m, d, b, dofs = self.model, self.data, self.body[arm], self.dof_adr[arm]
        lo, hi = self.range[arm][:, 0], self.range[arm][:, 1]
        q = np.clip(np.asarray(q0, float).copy(), lo, hi)
        err_rot = np.empty(3)
        for _ in range(iterations):
            d.qpos[self.qpos_adr[arm]] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            pos, quat = self.tcp_pose(d, arm)
            err_pos = target[0] - pos
            q_err = quat_mul(target[1], quat_conj(quat))
            if q_err[0] < 0:
                q_err = -q_err
            mujoco.mju_quat2Vel(err_rot, q_err, 1.0)
            if np.linalg.norm(err_pos) < 2e-4 and np.linalg.norm(err_rot) < 2e-3:
                break
            mujoco.mj_jac(m, d, self._jacp, self._jacr, pos, b)
            jac = np.vstack([self._jacp[:, dofs], self.rot_weight * self._jacr[:, dofs]])
            err = np.concatenate([err_pos, self.rot_weight * err_rot])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping ** 2 * np.eye(6), err)
            q = np.clip(q + dq, lo, hi)
        return q


# ---- timed waypoints -------------------------------------------------------------------------
Target = Callable[[], Pose]


@dataclass
class Waypoint:
    t: int                          # control step at which the arm arrives
    target: Target | None           # None: stay where the previous waypoint left it
    gripper: float                  # 0 closed .. 1 open, reached at t (linear from the previous waypoint)
    live: bool = False              # re-evaluate the target every step (servoing on a moving object)


class ArmTrack:
    """One arm's waypoints; a target is resolved when the arm starts moving towards it."""

    def __init__(self, start: Pose, start_gripper: float, waypoints: list[Waypoint]) -> None:
        self.waypoints = waypoints
        self.index = 0
        self.t_from, self.pose_from, self.grip_from = 0, start, start_gripper
        self.pose_to = self._resolve(waypoints[0], start)

    @staticmethod
    def _resolve(wp: Waypoint, previous: Pose) -> Pose:
        return previous if wp.target is None else wp.target()

    def at(self, t: int) -> tuple[Pose, float]:
        while self.index < len(self.waypoints) and t >= self.waypoints[self.index].t:
            wp = self.waypoints[self.index]
            self.t_from, self.grip_from = wp.t, wp.gripper
            self.pose_from = wp.target() if wp.live else self.pose_to
            self.index += 1
            if self.index < len(self.waypoints):
                self.pose_to = self._resolve(self.waypoints[self.index], self.pose_from)
        if self.index >= len(self.waypoints):
            last = self.waypoints[-1]
            return (last.target() if last.live else self.pose_from), self.grip_from
        wp = self.waypoints[self.index]
        if wp.live:
            self.pose_to = wp.target()
        f = min(1.0, max(0.0, (t - self.t_from) / max(1, wp.t - self.t_from)))
        f = 0.5 - 0.5 * np.cos(np.pi * f)  # ease in and out
        pos = self.pose_from[0] + f * (self.pose_to[0] - self.pose_from[0])
        quat = slerp(self.pose_from[1], self.pose_to[1], f)
        return (pos, quat), self.grip_from + f * (wp.gripper - self.grip_from)


# ---- the oracles -----------------------------------------------------------------------------
class _AlohaOracle(Oracle):
    """Shared machinery: IK, the two arm tracks, noise; subclasses write the waypoints."""
    task_family = ""
    # noise scales at noise = 1 (standard deviations)
    aim_error = 0.008      # metres, per episode: where the objects are believed to be (x, y; half in z)
    wander = 0.01          # metres, the slow drift of each TCP target (correlation time 0.4 s)
    joint_noise = 0.01     # radians, per joint (correlation time 0.2 s)
    time_stretch = 0.25    # each waypoint interval scaled by U(1 - s, 1 + s)

    def __init__(self, env: AlohaEnv, noise: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"oracle noise must be within [0, 1], got {noise}")
        super().__init__(env, noise, seed)
        self._ik: ArmIK | None = None
        self._tracks: dict[str, ArmTrack] = {}
        self._q: dict[str, np.ndarray] = {}
        self._wander = np.zeros((2, 3))

    def reset(self) -> None:
        env = self.env
        if env.task.family != self.task_family:
            raise ValueError(f"{type(self).__name__} plans {self.task_family}, but the scene is set up for "
                             f"{env.task.family}; use make_aloha_oracle")
        if self._ik is None or self._ik.model is not env.model:
            self._ik = ArmIK(env.model)
        proprio = env.observe(render=False).proprio
        self._q = {"left": proprio[0:6].copy(), "right": proprio[7:13].copy()}
        self._grip = {"left": proprio[6], "right": proprio[13]}
        self._t = 0
        self._wander, self._joint_err = np.zeros((2, 3)), np.zeros((2, 6))
        # per-episode misjudgement of where things are, and a time scale per waypoint
        self._offset = self.rng.normal(0.0, self.aim_error * self.noise, size=3) * np.array([1, 1, 0.5])
        self._tracks = self.plan()

    def plan(self) -> dict[str, ArmTrack]:
        raise NotImplementedError

    def act(self) -> np.ndarray:
        chunk = np.empty((self.env.chunk_size, self.env.action_dim))
        for i in range(self.env.chunk_size):
            chunk[i] = self._action(self._t)
            self._t += 1
        return chunk

    # helpers for the plans ------------------------------------------------------------------
    def start_pose(self, arm: str) -> Pose:
        return self._ik.forward(arm, self._q[arm])

    def tcp_now(self, arm: str) -> Pose:
        """Where the TCP actually is in the simulator."""
        return self._ik.tcp_pose(self.env.data, arm)

    def timeline(self, times: list[int]) -> list[int]:
        """Stretch or squeeze each interval a little (noise); keep the order and the 400-step budget."""
        if self.noise == 0:
            return times
        gaps = np.diff([0, *times]).astype(float)
        gaps *= self.rng.uniform(1 - self.time_stretch * self.noise, 1 + self.time_stretch * self.noise, size=len(gaps))
        out = np.cumsum(gaps)
        out *= min(1.0, (EPISODE_STEPS - 5) / out[-1])
        return [int(round(v)) for v in out]

    def _action(self, t: int) -> np.ndarray:
        action = np.empty(14)
        for k, arm in enumerate(ARMS):
            (pos, quat), grip = self._tracks[arm].at(t)
            if self.noise:
                # a slowly wandering target: AR(1) with 0.95 decay per step, stationary std ``wander``
                self._wander[k] = 0.95 * self._wander[k] + self.rng.normal(0, 0.312 * self.wander * self.noise, 3)
                pos = pos + self._wander[k]
            self._q[arm] = self._ik.solve(arm, self._q[arm], (pos, quat))
            q = self._q[arm]
            if self.noise:
                # joint error: AR(1) with 0.9 decay per step, stationary std ``joint_noise``
                self._joint_err[k] = 0.9 * self._joint_err[k] + self.rng.normal(0, 0.436 * self.joint_noise * self.noise, 6)
                q = q + self._joint_err[k]
            action[7 * k:7 * k + 6], action[7 * k + 6] = q, grip
        return action



class AlohaTransferCubeOracle(_AlohaOracle):
    """The right arm picks the cube up and holds it out; the left arm takes it and the right lets go."""
    task_family = "transfer_cube"
    meet = np.array([0.0, 0.5, 0.25])

    def plan(self) -> dict[str, ArmTrack]:
        env = self.env
        pick_q = gripper_quat(np.pi, PICK_PITCH)          # right gripper pointing -x, 60 degrees down
        take_q = gripper_quat(0.0, 0.0, np.pi / 2)         # left gripper level, fingers closing vertically
        cube = lambda: env.object_pose("red_box_joint")[:3] + self._offset  # noqa: E731
        settled = lambda: np.array([*cube()[:2], 0.02])   # noqa: E731  (the cube rests at z = 0.02)
        meet = self.meet
        t = self.timeline([90, 130, 165, 185, 215, 240, 270, 300, 330, 360, 395])
        right = [
            Waypoint(t[0], lambda: (settled() + [0, 0, 0.08], pick_q), 1.0),   # above the cube
            Waypoint(t[1], lambda: (cube() + [0, 0, 0.0], pick_q), 1.0),       # down around it
            Waypoint(t[2], None, 0.0),                                           # close
            Waypoint(t[3], lambda: (meet + [0.05, 0, -0.02], pick_q), 0.0),     # lift
            Waypoint(t[4], lambda: (meet, pick_q), 0.0),                         # hold it out
            Waypoint(t[7], None, 0.0),                                           # wait for the left gripper
            Waypoint(t[8], None, 1.0),                                           # let go
            Waypoint(t[9], lambda: (meet + [0.12, 0, 0.02], pick_q), 1.0),      # move away
        ]
        left = [
            Waypoint(t[2], lambda: (meet + [-0.12, 0, -0.02], take_q), 1.0),   # wait beside the meeting point
            Waypoint(t[5], None, 1.0),
            Waypoint(t[6], lambda: (cube() + [-0.005, 0, 0], take_q), 1.0),    # around the cube
            Waypoint(t[7], None, 0.0),                                           # close
            Waypoint(t[9], None, 0.0),
            Waypoint(t[10], lambda: (meet + [-0.1, 0, -0.02], take_q), 0.0),   # take it away
        ]
        return {"right": ArmTrack(self.start_pose("right"), self._grip["right"], right),
                "left": ArmTrack(self.start_pose("left"), self._grip["left"], left)}


class AlohaInsertionOracle(_AlohaOracle):
    """Each arm picks up its object; they are brought face to face and the peg is pushed into the socket.

    Once both are held, the peg is servoed on the socket's actual pose: its target is a point on the
    socket's axis, and an integral term removes what the arms' position control leaves off (sag)."""
    task_family = "insertion"
    meet = np.array([0.0, 0.5, 0.15])
    servo_gain = 0.08      # fraction of the peg's sideways error added to the integral per step
    servo_limit = 0.03     # metres
    pitch = np.radians(75)  # how far the grippers point down when picking (the peg is only 2 cm tall)
    final_depth = 0.088     # peg centre to socket centre at the end (0.10: the peg just touches the pin)
    wander = 0.003          # the insertion has millimetres to spare: a third of transfer_cube's noise
    joint_noise = 0.003

    def plan(self) -> dict[str, ArmTrack]:
        env = self.env
        left_q = gripper_quat(0.0, self.pitch)
        right_q = gripper_quat(np.pi, self.pitch)
        grasp_z = 0.003 + (TCP_TIP - TCP_LOCAL[0]) * np.sin(self.pitch)  # fingertips 3 mm above the table
        peg = lambda: env.object_pose("red_peg_joint")[:3] + self._offset  # noqa: E731
        socket = lambda: env.object_pose("blue_socket_joint")[:3] - self._offset  # noqa: E731
        meet = self.meet
        t = self.timeline([110, 150, 185, 235, 280, 320, 360])
        self._servo_from = t[3]
        self._bias = np.zeros(3)
        grasps: dict[str, Pose] = {}

        def holding(arm: str, joint: str, obj: Pose) -> Pose:
            """The TCP pose that puts the held object at ``obj``, given how it sits in the hand.

            The grasp is measured once the lift has begun and then kept: measuring it again while the
            peg presses on the pin would chase the peg as it slips back in the fingers."""
            grasp = grasps.get(arm)
            if grasp is None:
                pose = env.object_pose(joint)
                grasp = relative(self.tcp_now(arm), (pose[:3], pose[3:]))
                if self._t >= t[3]:
                    grasps[arm] = grasp
            inv = (quat_rotate(quat_conj(grasp[1]), -grasp[0]), quat_conj(grasp[1]))
            return compose(obj, inv)

        def peg_on_axis(depth: float) -> Callable[[], Pose]:
            """The peg centre ``depth`` metres from the socket centre along the socket's axis (0.10: touching the pin)."""
            def target() -> Pose:
                s = env.object_pose("blue_socket_joint")
                goal = compose((s[:3], s[3:]), (np.array([depth, 0.0, 0.0]), np.array([1.0, 0, 0, 0])))
                tcp = holding("right", "red_peg_joint", goal)
                return tcp[0] + self._bias, tcp[1]
            return target

        level = np.array([1.0, 0, 0, 0])
        left = [
            Waypoint(t[0], lambda: (np.array([*socket()[:2], grasp_z + 0.08]), left_q), 1.0),
            Waypoint(t[1], lambda: (np.array([*socket()[:2], grasp_z]), left_q), 1.0),
            Waypoint(t[2], None, 0.0),
            Waypoint(t[3], lambda: holding("left", "blue_socket_joint", (meet + [-0.08, 0, 0], level)), 0.0),
            Waypoint(t[4], lambda: holding("left", "blue_socket_joint", (meet + [-0.05, 0, 0], level)), 0.0),
        ]
        right = [
            Waypoint(t[0], lambda: (np.array([*peg()[:2], grasp_z + 0.08]), right_q), 1.0),
            Waypoint(t[1], lambda: (np.array([*peg()[:2], grasp_z]), right_q), 1.0),
            Waypoint(t[2], None, 0.0),
            Waypoint(t[3], lambda: holding("right", "red_peg_joint", (meet + [0.12, 0, 0], level)), 0.0),
            Waypoint(t[4], peg_on_axis(0.15), 0.0, live=True),     # lined up 3 cm outside the mouth
            Waypoint(t[5], peg_on_axis(0.15), 0.0, live=True),
            Waypoint(t[6], peg_on_axis(self.final_depth), 0.0, live=True),  # in, pressing on the pin
        ]
        return {"right": ArmTrack(self.start_pose("right"), self._grip["right"], right),
                "left": ArmTrack(self.start_pose("left"), self._grip["left"], left)}

    def _action(self, t: int) -> np.ndarray:
        if t >= self._servo_from:
            # integral on the peg's sideways offset from the socket axis (in the socket's frame: y and z)
            s, p = self.env.object_pose("blue_socket_joint"), self.env.object_pose("red_peg_joint")
            local = quat_rotate(quat_conj(s[3:]), p[:3] - s[:3])
            local[0] = 0.0
            self._bias = np.clip(self._bias - self.servo_gain * quat_rotate(s[3:], local),
                                 -self.servo_limit, self.servo_limit)
        return super()._action(t)


def make_aloha_oracle(env: AlohaEnv, noise: float = 0.0, seed: int = 0) -> Oracle:
    """The oracle for whichever task the scene is set up for; it follows task changes across resets."""
    return _TaskSwitchingOracle(env, noise, seed)


class _TaskSwitchingOracle(Oracle):
    """Picks the right scripted policy at every reset (an env may alternate tasks between episodes)."""

    def __init__(self, env: AlohaEnv, noise: float = 0.0, seed: int = 0) -> None:
        super().__init__(env, noise, seed)
        self._oracles = {"transfer_cube": AlohaTransferCubeOracle(env, noise, seed),
                         "insertion": AlohaInsertionOracle(env, noise, seed + 1)}
        self._current: _AlohaOracle | None = None

    def reset(self) -> None:
        self._current = self._oracles[self.env.task.family]
        self._current.reset()

    def act(self) -> np.ndarray:
        if self._current is None:
            raise RuntimeError("call reset() after env.reset() before act()")
        return self._current.act()


def run_episode(env: AlohaEnv, oracle: Oracle, seed: int, task_name: str | None = None,
                max_steps: int | None = None, until_success: bool = True) -> tuple[bool, int]:
    """Reset ``env`` for ``seed`` (task of family ``task_name``), run ``oracle`` without rendering until
    success (when ``until_success``) or the policy-step limit. Returns (success at the end, policy steps)."""
    task = env.sample_task(np.random.default_rng(seed), task_name) if task_name else None
    env.reset(seed, task, render=False)
    oracle.reset()
    limit = env.max_policy_steps if max_steps is None else max_steps
    for i in range(limit):
        if until_success and env.is_success():
            return True, i
        for action in oracle.act():
            env.step(action)
    return env.is_success(), limit
