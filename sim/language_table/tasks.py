"""LanguageTable instruction families: wording templates and ground-truth success.

Pure numpy (no MuJoCo): a success function takes the task's ``params`` and the blocks' xy centres,
so it can be tested on constructed states. The wording follows google-research/language-table
(``rewards/synonyms.py`` and the per-family reward files); success is computed from
``TaskSpec.params`` only, never from the instruction text.

Coordinates are the table's, in metres: X in [0.15, 0.6] runs from the top of the camera image
(X_MIN, the robot's base) to the bottom (X_MAX); Y in [-0.3048, 0.3048] runs from the image's left
(Y_MIN) to its right (Y_MAX), as in LanguageTable where "top left" is (X_MIN, Y_MIN).

Families and their params:

* ``block2block`` -- ``{"block": "red_moon", "target": "blue_cube"}``: success when the two blocks'
  centres are less than ``BLOCK2BLOCK_DISTANCE`` = 0.05 m apart (LanguageTable's
  TARGET_BLOCK_DISTANCE), kept although our blocks are 3.6-4.7 cm across: blocks touching face to
  face or face to corner are 0.036-0.047 m apart and count; only corner-to-corner touches of the
  bulkiest outlines (cube corners 0.0255 m, moon tips 0.027 m from the centre) may not.
* ``block2absolutelocation`` -- ``{"block": "red_moon", "location": "top_left"}``: success when the
  block's centre is within ``LOCATION_DISTANCE`` = 0.115 m of the location point (0.1 m for
  ``center``), LanguageTable's thresholds. The points are the workspace's corners, edge midpoints
  and centre (``LOCATIONS``).
* ``separate`` -- ``{"block": "red_moon", "avoid": "blue_cube"}``: success when the two blocks'
  centres are more than ``SEPARATE_DISTANCE`` = 0.15 m apart. Scenes for this family start with the
  pair closer than ``SEPARATE_START_DISTANCE`` = 0.08 m (LanguageTable's CONSIDERED_JOINED_THRESHOLD).
"""
from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..env import TaskSpec

# Workspace (the effector's reach), metres.
X_MIN, X_MAX = 0.15, 0.6
Y_MIN, Y_MAX = -0.3048, 0.3048
CENTER_X, CENTER_Y = (X_MIN + X_MAX) / 2, (Y_MIN + Y_MAX) / 2

COLORS = ("red", "blue", "green", "yellow")
SHAPES = ("moon", "cube", "star", "pentagon")
ALL_BLOCKS = tuple(f"{c}_{s}" for c in COLORS for s in SHAPES)
BLOCK_SETS: dict[str, tuple[str, ...]] = {
    "BLOCK_4": ("red_moon", "blue_cube", "green_star", "yellow_pentagon"),
    # 2 of each colour, 2 of each shape (LanguageTable's FIXED_8_COMBINATION).
    "BLOCK_8": ("red_moon", "red_pentagon", "blue_moon", "blue_cube",
                "green_cube", "green_star", "yellow_star", "yellow_pentagon"),
}

TASK_NAMES = ("block2block", "block2absolutelocation", "separate")

BLOCK2BLOCK_DISTANCE = 0.05
BLOCK2BLOCK_START_DISTANCE = 0.06      # reset only offers pairs at least this far apart
LOCATION_DISTANCE = 0.115
LOCATION_CENTER_DISTANCE = 0.1
SEPARATE_DISTANCE = 0.15
SEPARATE_START_DISTANCE = 0.08

# Image top = X_MIN, image left = Y_MIN.
LOCATIONS: dict[str, tuple[float, float]] = {
    "top_left": (X_MIN, Y_MIN),
    "top_center": (X_MIN, CENTER_Y),
    "top_right": (X_MIN, Y_MAX),
    "center_left": (CENTER_X, Y_MIN),
    "center": (CENTER_X, CENTER_Y),
    "center_right": (CENTER_X, Y_MAX),
    "bottom_left": (X_MAX, Y_MIN),
    "bottom_center": (X_MAX, CENTER_Y),
    "bottom_right": (X_MAX, Y_MAX),
}

LOCATION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "top_left": ("top left of the board", "top left", "upper left corner", "top left corner"),
    "top_center": ("top side", "top", "top center", "top of the board"),
    "top_right": ("top right of the board", "top right", "upper right corner", "top right corner"),
    "center_left": ("left side of the board", "center left", "left side"),
    "center": ("middle of the board", "center of the board", "center", "middle"),
    "center_right": ("right side of the board", "center right", "right side"),
    "bottom_left": ("bottom left of the board", "bottom left", "lower left corner", "bottom left corner"),
    "bottom_center": ("bottom side", "bottom", "bottom center", "bottom of the board"),
    "bottom_right": ("bottom right of the board", "bottom right", "lower right corner",
                     "bottom right corner"),
}

PUSH_VERBS = ("push", "move", "slide", "put")
PREPOSITIONS = ("to", "towards", "close to", "next to")
LOCATION_VERBS = ("push", "move", "slide")
SEPARATE_TEMPLATES = ("pull the {a} apart from the {b}", "move the {a} away from the {b}",
                      "separate the {a} from the {b}", "push the {a} away from the {b}")


def _names(valid) -> str:
    return ", ".join(sorted(valid))


def check_block_set(block_set: str) -> tuple[str, ...]:
    if block_set not in BLOCK_SETS:
        raise ValueError(f"unknown block_set {block_set!r}; valid: {_names(BLOCK_SETS)}")
    return BLOCK_SETS[block_set]


def check_task_name(name: str) -> str:
    if name not in TASK_NAMES:
        raise ValueError(f"unknown LanguageTable task {name!r}; valid: {', '.join(TASK_NAMES)}")
    return name


def _check_block(name: Any, blocks: tuple[str, ...], key: str) -> str:
    if name not in blocks:
        raise ValueError(f"unknown block {name!r} for params[{key!r}]; valid on this table: {_names(blocks)}")
    return name


def validate_params(family: str, params: Mapping[str, Any], blocks: tuple[str, ...]) -> None:
    """ValueError (listing the valid names) unless ``params`` names a valid goal on this table."""
    check_task_name(family)
    _check_block(params.get("block"), blocks, "block")
    if family == "block2block":
        _check_block(params.get("target"), blocks, "target")
        if params["target"] == params["block"]:
            raise ValueError("block2block needs two different blocks")
    elif family == "block2absolutelocation":
        if params.get("location") not in LOCATIONS:
            raise ValueError(f"unknown location {params.get('location')!r}; valid: {_names(LOCATIONS)}")
    else:
        _check_block(params.get("avoid"), blocks, "avoid")
        if params["avoid"] == params["block"]:
            raise ValueError("separate needs two different blocks")


def block_synonyms(block: str, blocks_on_table: tuple[str, ...]) -> list[str]:
    """How an instruction may name ``block``: "red moon" always, "red block" / "moon" when unambiguous."""
    color, shape = block.split("_")
    colors = Counter(b.split("_")[0] for b in blocks_on_table)
    shapes = Counter(b.split("_")[1] for b in blocks_on_table)
    out = []
    if colors[color] == 1:
        out.append(f"{color} block")
    if shapes[shape] == 1:
        out.append(shape)
    out.append(f"{color} {shape}")
    return out


def instruction_for(family: str, params: Mapping[str, Any], blocks_on_table: tuple[str, ...],
                    rng: np.random.Generator | None = None) -> str:
    """A wording of the goal; canonical ("push the red moon to the blue cube") without ``rng``."""
    def pick(options):
        options = list(options)
        return options[0] if rng is None else options[int(rng.integers(len(options)))]

    def block_text(name):
        syns = block_synonyms(name, blocks_on_table)
        return syns[-1] if rng is None else pick(syns)

    validate_params(family, params, blocks_on_table)
    a = block_text(params["block"])
    if family == "block2block":
        return f"{pick(PUSH_VERBS)} the {a} {pick(PREPOSITIONS)} the {block_text(params['target'])}"
    if family == "block2absolutelocation":
        loc = params["location"]
        syns = LOCATION_SYNONYMS[loc]
        loc_text = (syns[1] if rng is None else pick(syns))
        return f"{pick(LOCATION_VERBS)} the {a} to the {loc_text}"
    return pick(SEPARATE_TEMPLATES[2:3] if rng is None else SEPARATE_TEMPLATES).format(
        a=a, b=block_text(params["avoid"]))


def sample_task(rng: np.random.Generator, blocks_on_table: tuple[str, ...],
                task_name: str | None = None) -> TaskSpec:
    """A random family (when ``task_name`` is None), blocks, location and wording."""
    family = TASK_NAMES[int(rng.integers(len(TASK_NAMES)))] if task_name is None else check_task_name(task_name)
    n = len(blocks_on_table)
    if family == "block2absolutelocation":
        params = {"block": blocks_on_table[int(rng.integers(n))],
                  "location": tuple(LOCATIONS)[int(rng.integers(len(LOCATIONS)))]}
    else:
        pairs = list(itertools.permutations(blocks_on_table, 2))
        a, b = pairs[int(rng.integers(len(pairs)))]
        params = {"block": a, ("target" if family == "block2block" else "avoid"): b}
    return TaskSpec(instruction_for(family, params, blocks_on_table, rng), family, params)


def location_point(name: str) -> np.ndarray:
    if name not in LOCATIONS:
        raise ValueError(f"unknown location {name!r}; valid: {_names(LOCATIONS)}")
    return np.asarray(LOCATIONS[name], dtype=np.float64)


def location_radius(name: str) -> float:
    return LOCATION_CENTER_DISTANCE if name == "center" else LOCATION_DISTANCE


def _xy(positions: Mapping[str, Any], name: str) -> np.ndarray:
    if name not in positions:
        raise ValueError(f"unknown block {name!r}; valid: {_names(positions)}")
    return np.asarray(positions[name], dtype=np.float64)[:2]


def success(family: str, params: Mapping[str, Any], positions: Mapping[str, Any]) -> bool:
    """Ground truth for ``family``/``params`` given each block's centre (name -> xy, metres)."""
    check_task_name(family)
    p = _xy(positions, params.get("block"))
    if family == "block2block":
        return bool(np.linalg.norm(p - _xy(positions, params.get("target"))) < BLOCK2BLOCK_DISTANCE)
    if family == "block2absolutelocation":
        loc = params.get("location")
        return bool(np.linalg.norm(p - location_point(loc)) < location_radius(loc))
    return bool(np.linalg.norm(p - _xy(positions, params.get("avoid"))) > SEPARATE_DISTANCE)


def task_success(task: TaskSpec, positions: Mapping[str, Any]) -> bool:
    return success(task.family, task.params, positions)
