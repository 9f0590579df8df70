"""ruff's flake8-bandit (S) rules, with the project's own configuration: they flag security smells in
the application, and the per-file exceptions in pyproject.toml stay as narrow as they say."""

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's configuration (pyproject.toml), on source read from stdin as if it were another file.
RUFF = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "--stdin-filename"]
SMELLS = """import subprocess


def run(command: str) -> None:
    assert command, "no command"
    subprocess.run(command, shell=True)
"""


def flagged(path: str) -> set[str]:
    """The S rules ruff reports on SMELLS as if it were the file at `path` (nothing is written)."""
    result = subprocess.run(
        [*RUFF, path, "-"], input=SMELLS, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    codes = {line.split()[1] for line in result.stdout.splitlines() if line.startswith(f"{path}:")}
    return {code for code in codes if code.startswith("S")}


def test_the_application_gets_every_rule():
    assert flagged("{{ cookiecutter.project_slug }}/example.py") >= {"S101", "S602"}


def test_tests_may_assert_but_not_run_a_shell():
    assert flagged("tests/test_example.py") == {"S602"}
