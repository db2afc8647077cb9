"""Tiny nodes for checking that a graph comes up: talker -> relay -> listener per robot (config/smoke.yaml)."""
