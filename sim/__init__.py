"""efm_sim (the sim/ folder): MuJoCo LanguageTable and Aloha environments, scripted oracles, the sim
node that speaks the hardware's topics, and demo recording. Installed as the import package ``efm_sim``."""
import os

# Offscreen rendering without a display (robots' PCs, CI); a user who set MUJOCO_GL keeps their choice.
os.environ.setdefault("MUJOCO_GL", "egl")
