"""The README's two newcomer commands stay true: CI runs the test command verbatim."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command_after(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim():
    command = command_after("## Run the tests")
    assert "pytest" in command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_quick_start_installs_and_runs_the_main_job():
    command = command_after("## Quick start")
    assert 'pip install -c constraints.txt -e ".[sim,train]"' in command
    assert command.endswith("efm self-improve --env language_table --quick")


def test_the_main_job_command_parses():
    from efm_runtime.cli import build_parser

    command = command_after("## Quick start")
    args = build_parser().parse_args(command.split("&& efm ", 1)[1].split())
    assert args.quick and args.env == "language_table"
