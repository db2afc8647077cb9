"""LanguageTable (google-research/language-table) re-built in MuJoCo: env, instruction families, oracle."""
from .env import LanguageTableEnv
from .oracle import LanguageTableOracle
from .tasks import BLOCK_SETS, LOCATIONS, TASK_NAMES

__all__ = ["BLOCK_SETS", "LOCATIONS", "TASK_NAMES", "LanguageTableEnv", "LanguageTableOracle"]
