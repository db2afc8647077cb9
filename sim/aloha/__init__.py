"""Aloha (bimanual ViperX) on gym-aloha's MuJoCo scenes: the environment and its scripted oracles."""
from .env import CAMERAS, JOINT_NAMES, AlohaEnv

__all__ = ["AlohaEnv", "CAMERAS", "JOINT_NAMES"]
