"""The first net: ruff's flake8-async (ASYNC) rules, read statically, before anything runs."""

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUFF = [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "ASYNC"]
RUFF_OUTPUT = ["--output-format", "concise"]


def ruff_async(target: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RUFF, *RUFF_OUTPUT, target], cwd=PROJECT_ROOT, capture_output=True, text=True)


def test_application_package_has_no_blocking_call_in_async_code():
    result = ruff_async("{{ cookiecutter.project_slug }}")
    assert result.returncode == 0, result.stdout


def test_ruff_flags_the_anti_patterns_it_can_see():
    """Negative control: time.sleep in `async def` is flagged statically."""
    result = ruff_async("antipatterns/app.py")
    assert result.returncode == 1
    assert "ASYNC251" in result.stdout  # time.sleep in async def


def test_ruff_cannot_see_blocking_behind_a_function_call():
    """Why the runtime nets exist: psycopg2 and requests called through helpers are not flagged."""
    flagged_lines = {
        int(line.split(":")[1])
        for line in ruff_async("antipatterns/app.py").stdout.splitlines()
        if ":" in line
    }
    source = (PROJECT_ROOT / "antipatterns/app.py").read_text().splitlines()
    unflagged = [number for number, line in enumerate(source, start=1) if "# WRONG" in line]
    unflagged = [number for number in unflagged if number not in flagged_lines]
    assert unflagged, "every anti-pattern was flagged statically; the runtime guards would be redundant"
