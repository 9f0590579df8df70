"""The template repo's own files: options, README, CI script, the root compose file, the tests' lint."""

import re
import subprocess

import yaml
from cookiecutter.environment import StrictEnvironment

from .conftest import COOKIECUTTER_JSON, DEFAULTS, ROOT, clean_env, tool

OPTIONS = [key for key in COOKIECUTTER_JSON if not key.startswith("_")]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """The shell blocks of README.md's first screen (before the options table)."""
    first_screen = README.split("\n## ", 2)
    head = "\n## ".join(first_screen[:2])
    return [block.strip() for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", head, re.DOTALL)]


def ci_test_command() -> str:
    """The last line of .ci/run that is neither blank nor a comment: the tests."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")][-1]


def test_every_option_has_a_prompt():
    assert set(OPTIONS) == set(COOKIECUTTER_JSON["__prompts__"])


def test_readme_options_table_lists_every_option():
    rows = re.findall(r"^\| `(\w+)` \|", README, re.MULTILINE)
    assert sorted(rows) == sorted(OPTIONS)


def test_readme_first_screen_has_the_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    generate, test = commands
    assert "cookiecutter --no-input" in generate and generate.rstrip().endswith("make dev")
    assert test == ci_test_command(), ".ci/run must run exactly README's test command"


def test_readme_shows_a_measured_table_and_its_command():
    section = README.split("## Measured on this machine\n", 1)[1].split("\n## ", 1)[0]
    assert "make bench" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    patterns = " ".join(rows)
    for route in ("/async/db-wait", "/sync/db-wait", "/anti/db-wait", "/mixed/report", "/cpu/compute"):
        assert route in patterns, f"the measured table has no {route} row"


def test_ci_script_is_strict():
    script = (ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script


def test_root_compose_file():
    compose_file = ROOT / "docker-compose.yml"
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(compose_file), "config", "-q"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load(compose_file.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["ports"], f"{name} publishes no port"
        for port in service["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond 127.0.0.1"
    volumes = [volume.split(":", 1)[0] for volume in services["postgres"]["volumes"]]
    assert volumes and all(volume in compose["volumes"] for volume in volumes), (
        "postgres needs a named volume"
    )
    assert services["postgres"]["image"] == f"postgres:{COOKIECUTTER_JSON['postgres_version']}"
    assert services["redis"]["image"] == f"redis:{COOKIECUTTER_JSON['redis_version']}"


def test_template_tests_lint_clean():
    for argv in (["check", "--no-cache", "tests"], ["format", "--no-cache", "--check", "tests"]):
        result = subprocess.run(
            [tool("ruff"), *argv], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_hooks_lint_clean(tmp_path):
    """The hooks are Jinja until cookiecutter renders them: lint them rendered, as they run."""
    context = {"cookiecutter": {**DEFAULTS, "project_slug": "my_service"}}
    for hook in sorted((ROOT / "hooks").glob("*.py")):
        rendered = tmp_path / hook.name
        text = StrictEnvironment(context=context).from_string(hook.read_text()).render(**context)
        rendered.write_text(text + "\n")  # Jinja drops the final newline
    config = str(ROOT / "pyproject.toml")
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        argv = [tool("ruff"), *command, "--config", config]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_one_uv_version_everywhere():
    """The uv that bakes the lock (requirements-dev.txt), the one a bake locks for itself (its dev
    extra) and the one that builds the image start from one release, so the image's uv reads the lock."""
    template = ROOT / "{{cookiecutter.project_slug}}"
    versions = {
        "requirements-dev.txt": re.findall(
            r"^uv>=([\d.]+)$", (ROOT / "requirements-dev.txt").read_text(), re.M
        ),
        "pyproject.toml": re.findall(r'"uv>=([\d.]+)"', (template / "pyproject.toml").read_text()),
        "Dockerfile": re.findall(r"ghcr\.io/astral-sh/uv:([\d.]+) ", (template / "Dockerfile").read_text()),
    }
    assert all(len(found) == 1 for found in versions.values()), versions
    assert len({found[0] for found in versions.values()}) == 1, versions
