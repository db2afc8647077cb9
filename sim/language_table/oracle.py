"""Scripted pushing oracle for LanguageTable (privileged: reads block and effector positions).

Every step it re-plans from the current state, for each family a goal point for one block:

* block2block: the target block's centre (the blocks touch, and succeed, just before it);
* block2absolutelocation: the location point, pulled inside the board so a pushed block can get there;
* separate: a point 0.2 m from the avoided block, in the direction (of 24) closest to "straight
  away from it" whose pre-push spot is free of other blocks and whose goal lies on the board.

Pushing is contact-aware: with ``d`` the unit vector from the block to its goal, the effector first
goes to the pre-push spot behind the block (``block - STANDOFF * d``), orbiting the block at the
stand-off radius when it is close (so it does not knock it) and walking round other blocks in its way
when it is far; once behind and aligned it pushes through the block's centre towards the goal,
slowing down near it. The line block->goal is recomputed every step, so a block that drifts sideways
moves the pushing spot (the effector follows, slightly off-centre against the drift: the sign and
gain of that offset were chosen by measuring success), and past a lateral tolerance the effector
goes back to re-approach. A block pushed past the workspace edge, where the effector cannot get
fully behind it, is pushed in the nearest direction the effector can still push from.

``noise`` in [0, 1] makes it deliberately worse: Gaussian action noise (std NOISE_STD * noise m),
a per-episode lateral offset of the pushing contact (uniform, up to NOISE_BIAS * noise m, so pushes
curve), and random detours (a random direction held for 2-4 steps) started with probability
NOISE_DETOUR_P * noise per step. Measured on block2block (100 seeds, BLOCK_8): noise 0 -> ~99-100 %,
0.25 -> ~95 %, 0.5 -> ~60 %, 1.0 -> ~25 % success within 200 steps.
"""
from __future__ import annotations

import math

import numpy as np

from ..env import Oracle
from . import tasks as T
from .env import ACTION_LIMIT, LanguageTableEnv

STANDOFF = 0.055          # effector centre to block centre before a push
ORBIT_STEP = 0.6          # rad per step around a block (short chords do not cut in)
MIN_STANDOFF = 0.036      # closer than this behind a block, a push cannot start
CONTACT = 0.02            # push "into" the block: aim the effector this far from its centre
CLEARANCE = 0.05          # detour radius around other blocks
APPROACH_SPEED = 0.08     # m per step
PUSH_SPEED = 0.04
MIN_PUSH_SPEED = 0.012
ALIGN_ENTER, ALIGN_EXIT = 0.012, 0.03
STEER_GAIN, STEER_MAX = -0.012, 0.005  # m of contact offset per rad of veer, cap
SEPARATE_GOAL = 0.2
NOISE_STD = 0.05          # Gaussian action noise per unit of noise, m
NOISE_DETOUR_P = 0.3      # chance per step (per unit of noise) of a random 2-4 step detour
NOISE_BIAS = 0.015        # per-episode lateral contact offset (per unit of noise), m
GOAL_INSET = 0.045        # location goals pulled this far inside the workspace


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def _perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


class LanguageTableOracle(Oracle):
    env: LanguageTableEnv

    def __init__(self, env: LanguageTableEnv, noise: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        super().__init__(env, noise, seed)
        self.reset_state()

    def reset_state(self) -> None:
        self._pushing = False
        self._detour: np.ndarray | None = None
        self._detour_left = 0
        self._sep_dir: np.ndarray | None = None
        self._around: tuple[str, float] | None = None
        self._prev: tuple[str, np.ndarray] | None = None
        self._bias = 0.0

    def reset(self) -> None:
        self.reset_state()
        self._bias = float(self.rng.uniform(-1, 1)) * NOISE_BIAS * self.noise
        task = self.env.task
        if task.family == "separate":
            self._sep_dir = self._separate_direction()

    # --- planning -----------------------------------------------------------------------------

    def _goal(self, pos: dict[str, np.ndarray]) -> tuple[str, np.ndarray, float]:
        """(block to push, goal point, distance left to push)."""
        task = self.env.task
        b = task.params["block"]
        p = pos[b]
        if task.family == "block2block":
            g = pos[task.params["target"]]
            return b, g, float(np.linalg.norm(g - p)) - 0.04
        if task.family == "block2absolutelocation":
            g = T.location_point(task.params["location"])
            g = np.clip(g, [T.X_MIN + GOAL_INSET, T.Y_MIN + GOAL_INSET], [T.X_MAX - GOAL_INSET, T.Y_MAX - GOAL_INSET])
            return b, g, float(np.linalg.norm(g - p)) - 0.03
        a = pos[task.params["avoid"]]
        g = self._separate_goal(p, a, self._sep_dir)
        return b, g, float(np.linalg.norm(g - p))

    @staticmethod
    def _separate_goal(p: np.ndarray, a: np.ndarray, u: np.ndarray) -> np.ndarray:
        # the point p + s*u (s > 0) at distance SEPARATE_GOAL from a
        w = p - a
        bq = float(w @ u)
        s = -bq + math.sqrt(max(bq * bq - (w @ w - SEPARATE_GOAL ** 2), 0.0))
        return p + s * u

    def _separate_direction(self) -> np.ndarray:
        pos = self.env.block_positions()
        b, a = self.env.task.params["block"], self.env.task.params["avoid"]
        p = pos[b]
        away = math.atan2(*(_unit(p - pos[a]))[::-1])
        best, best_cost = None, math.inf
        lo = np.array([T.X_MIN + 0.04, T.Y_MIN + 0.04])
        hi = np.array([T.X_MAX - 0.04, T.Y_MAX - 0.04])
        for k in range(24):
            off = (k + 1) // 2 * (1 if k % 2 else -1) * math.pi / 12
            u = np.array([math.cos(away + off), math.sin(away + off)])
            g = self._separate_goal(p, pos[a], u)
            pre = p - STANDOFF * u
            blocked = any(np.linalg.norm(pre - q) < 0.042 for n, q in pos.items() if n != b)
            outside = bool(np.any(g < lo) or np.any(g > hi) or np.any(pre < lo - 0.04) or np.any(pre > hi + 0.04))
            cost = abs(off) + (10 if blocked else 0) + (5 if outside else 0)
            if cost < best_cost:
                best, best_cost = u, cost
        return best

    def _nominal(self) -> np.ndarray:
        env = self.env
        if env.is_success():
            self._pushing = False
            return np.zeros(2)
        pos = env.block_positions()
        e = env.effector_position()
        b, g, left = self._goal(pos)
        p = pos[b]
        d, so = self._feasible_direction(p, _unit(g - p))
        n = _perp(d)
        rel = e - p
        along, lat = float(rel @ d), float(rel @ n) - self._bias

        if self._pushing and (abs(lat) > ALIGN_EXIT or along > -0.01 or along < -so - 0.04):
            self._pushing = False
        if not self._pushing and -so - 0.02 < along < -so + 0.012 and abs(lat) < ALIGN_ENTER:
            self._pushing = True

        prev, self._prev = self._prev, (b, p)
        if self._pushing:
            speed = float(np.clip(0.6 * left, MIN_PUSH_SPEED, PUSH_SPEED))
            steer = 0.0
            if prev is not None and prev[0] == b:
                m = p - prev[1]
                if np.linalg.norm(m) > 0.004:
                    # the block's last motion veers off d by alpha: shift the contact (measured best:
                    # against the veer, STEER_GAIN < 0)
                    alpha = math.atan2(d[0] * m[1] - d[1] * m[0], float(d @ m))
                    steer = float(np.clip(STEER_GAIN * alpha, -STEER_MAX, STEER_MAX))
            aim = p - CONTACT * d + (self._bias + steer) * n
            # move through the block at `speed` while correcting the lateral offset
            lat_fix = float((aim - e) @ n)
            return speed * d + np.clip(lat_fix, -speed, speed) * n

        pre = p - so * d + self._bias * n
        dist_b = float(np.linalg.norm(rel))
        if dist_b < STANDOFF + 0.03:
            # orbit the block at the stand-off radius towards the pre-push angle
            phi = math.atan2(rel[1], rel[0])
            phi_t = math.atan2(-d[1], -d[0])
            dphi = (phi_t - phi + math.pi) % (2 * math.pi) - math.pi
            r = STANDOFF + 0.01
            step_ang = math.copysign(min(abs(dphi), ORBIT_STEP), dphi)
            if abs(dphi) < 0.25:
                way = pre
            else:
                way = p + r * np.array([math.cos(phi + step_ang), math.sin(phi + step_ang)])
            way = np.clip(way, [T.X_MIN, T.Y_MIN], [T.X_MAX, T.Y_MAX])
            return self._limit(way - e, APPROACH_SPEED)
        way = self._detour_waypoint(e, pre, pos, b)
        return self._limit(way - e, APPROACH_SPEED)

    @staticmethod
    def _reach(p: np.ndarray, u: np.ndarray) -> float:
        """The largest t <= STANDOFF with p - t*u inside the workspace (where the effector can be),
        or -inf when there is none."""
        t_lo, t_hi = 0.0, STANDOFF
        for k, (lo, hi) in enumerate(((T.X_MIN, T.X_MAX), (T.Y_MIN, T.Y_MAX))):
            lo, hi = lo - 0.002, hi + 0.002
            if abs(u[k]) < 1e-9:
                if not lo <= p[k] <= hi:
                    return -math.inf
                continue
            a, b = (p[k] - hi) / u[k], (p[k] - lo) / u[k]
            t_lo, t_hi = max(t_lo, min(a, b)), min(t_hi, max(a, b))
        return t_hi if t_hi >= t_lo else -math.inf

    def _feasible_direction(self, p: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, float]:
        """(direction, stand-off): ``d`` and how far behind the block the effector can stand, or, when
        that is too close to push from (a block past the workspace edge), the direction nearest ``d``
        (rotated up to 90 degrees, preferring the board's centre) the effector can still push along."""
        so = self._reach(p, d)
        if so >= MIN_STANDOFF:
            return d, so
        base = math.atan2(d[1], d[0])
        inward = np.array([T.CENTER_X, T.CENTER_Y]) - p
        for k in range(1, 13):
            found = []
            for sgn in (1, -1):
                a = base + sgn * k * math.pi / 24
                u = np.array([math.cos(a), math.sin(a)])
                so = self._reach(p, u)
                if so >= MIN_STANDOFF:
                    found.append((float(u @ inward), u, so))
            if found:   # of two equally good turns, the one that pushes the block away from the edge
                _, u, so = max(found, key=lambda f: f[0])
                return u, so
        return d, STANDOFF

    def _detour_waypoint(self, e: np.ndarray, q: np.ndarray, pos: dict[str, np.ndarray], pushed: str) -> np.ndarray:
        """``q``, or the next point of a walk around the first block in the way of the segment e->q
        (in a sense kept until the way is clear, so the walk does not dither)."""
        seg = q - e
        L = float(np.linalg.norm(seg))
        if L < 1e-6:
            return q
        u = seg / L
        best_t, hit = math.inf, None
        for name, c in pos.items():
            r = (STANDOFF - 0.005) if name == pushed else CLEARANCE
            t = float(np.clip((c - e) @ u, 0.0, L))
            if np.linalg.norm(e + t * u - c) < r and t < best_t and np.linalg.norm(q - c) > r * 0.9:
                best_t, hit = t, (name, c, r)
        if hit is None:
            self._around = None
            return q
        name, c, r = hit
        if self._around is None or self._around[0] != name:
            # go round on the side of the segment away from the block's centre
            cross = float(u[0] * (c - e)[1] - u[1] * (c - e)[0])
            self._around = (name, -1.0 if cross > 0 else 1.0)
        sense = self._around[1]
        rel = e - c
        phi = math.atan2(rel[1], rel[0])
        R = r + 0.012
        if np.linalg.norm(rel) > R + 0.02:
            # head for the tangent point on the circle of radius R, on the chosen side
            dist = float(np.linalg.norm(rel))
            beta = math.acos(min(R / dist, 1.0))
            ang = phi + sense * beta
        else:
            ang = phi + sense * min(APPROACH_SPEED / R, 0.9)
        way = c + R * np.array([math.cos(ang), math.sin(ang)])
        return np.clip(way, [T.X_MIN, T.Y_MIN], [T.X_MAX, T.Y_MAX])

    @staticmethod
    def _limit(v: np.ndarray, speed: float) -> np.ndarray:
        n = float(np.linalg.norm(v))
        return v if n <= speed else v * (speed / n)

    # --- Oracle -------------------------------------------------------------------------------

    def act(self) -> np.ndarray:
        if self._detour_left > 0:
            self._detour_left -= 1
            a = self._detour
        else:
            a = self._nominal()
            # Actions move the effector *target*; steer the target back to the effector if they part.
            a = a + 0.5 * (self.env.effector_position() - self.env.effector_target)
            if self.noise > 0 and self.rng.random() < NOISE_DETOUR_P * self.noise:
                ang = self.rng.uniform(-math.pi, math.pi)
                self._detour = APPROACH_SPEED * np.array([math.cos(ang), math.sin(ang)])
                self._detour_left = int(self.rng.integers(1, 4))
                self._pushing = False
                a = self._detour
        if self.noise > 0:
            a = a + self.rng.normal(0.0, NOISE_STD * self.noise, size=2)
        a = np.clip(a, -ACTION_LIMIT, ACTION_LIMIT)
        return a.reshape(self.env.chunk_size, self.env.action_dim)


def run_episode(env: LanguageTableEnv, oracle: LanguageTableOracle, seed: int, task_name: str | None = None,
                max_steps: int | None = None) -> tuple[bool, int]:
    """Reset ``env`` for ``seed`` (task of family ``task_name``), run ``oracle`` until success or the
    step limit, without rendering. Returns (success, steps taken)."""
    rng = np.random.default_rng(seed)
    task = env.sample_task(rng, task_name) if task_name else None
    env.reset(seed, task, render=False)
    oracle.reset()
    limit = env.max_policy_steps if max_steps is None else max_steps
    for i in range(limit):
        if env.is_success():
            return True, i
        env.step(oracle.act()[0])
    return env.is_success(), limit
