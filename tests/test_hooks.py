"""The hooks' rules: bad answers refused with one clear line and nothing written; fresh secrets per
bake; the lock made at bake time, or one line saying why not (no network, no uv) and nothing written."""

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from .conftest import ROOT, clean_env, tool

BAD_SLUGS = {
    "1abc": "starts with a digit",
    "class": "a keyword",
    "match": "a soft keyword",
    "my-service": "a hyphen",
    "Upper": "upper case",
    "celery": "a dependency",
    "redis": "a dependency",
    "fastapi": "a dependency",
    "test": "the standard library and pytest's tests",
    "json": "the standard library",
    "tools": "the project's own tools package",
    'my"service': "a quote",
}


def cookiecutter_cli(
    output_dir: Path,
    config: Path,
    *answers: str,
    env: dict[str, str] | None = None,
    program: Path | None = None,
) -> subprocess.CompletedProcess:
    """The real command line a user types, --no-input as in CI; `env` adds to the environment,
    `program` is another installation of cookiecutter."""
    output_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(program)] if program else [sys.executable, "-m", "cookiecutter"]
    argv += ["--no-input", "--config-file", str(config), "--output-dir", str(output_dir), str(ROOT), *answers]
    return subprocess.run(
        argv,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]


@pytest.mark.parametrize("slug", list(BAD_SLUGS), ids=list(BAD_SLUGS.values()))
def test_bad_slug_refused_with_one_line_and_nothing_written(slug, tmp_path, cookiecutter_config):
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, f"project_slug={slug}")
    assert result.returncode != 0
    assert list((tmp_path / "out").iterdir()) == [], "a refused slug left files behind"
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ERROR: project_slug {slug!r} "), lines[0]
    assert re.search(r"; try project_slug='[a-z_][a-z0-9_]*'\.$", lines[0]), lines[0]


@pytest.mark.parametrize("slug", ["1abc", "class", "my-service", "Upper", "celery", "json"])
def test_suggested_slug_is_accepted(slug, tmp_path, cookiecutter_config):
    refused = cookiecutter_cli(tmp_path / "refused", cookiecutter_config, f"project_slug={slug}")
    suggestion = re.search(r"try project_slug='([^']+)'", refused.stderr).group(1)
    accepted = cookiecutter_cli(tmp_path / "out", cookiecutter_config, f"project_slug={suggestion}")
    assert accepted.returncode == 0, accepted.stderr
    assert (tmp_path / "out" / suggestion / suggestion / "__init__.py").is_file()


@pytest.mark.parametrize(
    "answer",
    ["postgres_version=17 alpine", "postgres_version=", "redis_version=latest;rm", "redis_version=-7"],
)
def test_bad_image_tag_refused(answer, tmp_path, cookiecutter_config):
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, answer)
    assert result.returncode != 0
    assert list((tmp_path / "out").iterdir()) == []
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ERROR: {answer.split('=')[0]} ") and "Docker image tag" in lines[0]


@pytest.mark.parametrize("tag", ["latest", "alpine", "18beta1"])
def test_postgres_tag_without_a_major_refused(tag, tmp_path, cookiecutter_config):
    """The major decides where compose mounts the data volume: a tag that hides it is refused."""
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, f"postgres_version={tag}")
    assert result.returncode != 0
    assert list((tmp_path / "out").iterdir()) == []
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ERROR: postgres_version {tag!r} names no major version"), lines[0]
    assert "try '18'" in lines[0], lines[0]


@pytest.mark.parametrize(
    "answer", ['project_name=The "Best" Service', "description=ends with a backslash \\", 'author=A "B" C']
)
def test_text_that_would_break_quoted_strings_refused(answer, tmp_path, cookiecutter_config):
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, answer)
    assert result.returncode != 0
    assert list((tmp_path / "out").iterdir()) == []
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {answer.split('=')[0]} "), result.stderr


def test_good_bake_prints_next_steps(tmp_path, cookiecutter_config):
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config)
    assert result.returncode == 0, result.stderr
    assert "cd my_service" in result.stdout
    assert "make dev" in result.stdout and "make test" in result.stdout


def env_values(project: Path) -> dict[str, str]:
    values = {}
    for line in (project / ".env").read_text().splitlines():
        key, separator, value = line.partition("=")
        if separator and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def test_every_bake_gets_its_own_secrets(bake_into, tmp_path):
    first = bake_into(tmp_path / "first")
    second = bake_into(tmp_path / "second", use_celery="no", include_benchmarks="no")
    for project in (first, second):
        text = (project / ".env").read_text()
        assert "change-me" not in text, "a default secret shipped in .env"
        assert (project / ".env").stat().st_mode & 0o777 == 0o600
        password = env_values(project)["POSTGRES_PASSWORD"]
        assert len(password) >= 24
    assert env_values(first)["POSTGRES_PASSWORD"] != env_values(second)["POSTGRES_PASSWORD"]


def test_example_env_has_placeholders_only(bake_into, tmp_path):
    """Whatever is secret in .env.example is a placeholder the hook replaces, never a real value."""
    project = bake_into(tmp_path / "out")
    example = (project / ".env.example").read_text()
    secret_keys = re.findall(r"^(\w*(?:PASSWORD|SECRET)\w*|\w+_(?:TOKEN|KEY))=(.*)$", example, re.MULTILINE)
    assert secret_keys, ".env.example names no secret at all"
    for key, value in secret_keys:
        assert value == "change-me", f"{key} in .env.example should be the placeholder 'change-me'"
        assert env_values(project)[key] not in {"", "change-me"}


def only_error_line(result: subprocess.CompletedProcess) -> str:
    """The hook's whole stderr: exactly one ERROR line, no traceback. (cookiecutter itself then logs
    "Stopping generation" and a traceback on stdout for any failing hook; no hook can prevent that.)"""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("ERROR: "), result.stderr
    return lines[0]


# No network, two honest ways: an index that refuses connections (what a firewall or a dead mirror
# gives; retries off, they only add seconds), and uv told it is offline. Both with an empty cache,
# so nothing this machine downloaded before can stand in for the index.
NO_NETWORK = {
    "connection refused": {"UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple", "UV_HTTP_RETRIES": "0"},
    "offline": {"UV_OFFLINE": "1"},
}


@pytest.mark.parametrize("variables", list(NO_NETWORK.values()), ids=list(NO_NETWORK))
def test_bake_without_network_fails_with_one_line_and_leaves_nothing(
    variables, tmp_path, cookiecutter_config
):
    env = {**variables, "UV_CACHE_DIR": str(tmp_path / "empty-cache")}
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, env=env)
    line = only_error_line(result)
    assert line.startswith("ERROR: `uv lock` failed (") and "bake again where" in line, line
    assert re.search(r"Connection refused|network was disabled", line), line
    assert list((tmp_path / "out").iterdir()) == [], "a failed lock left the project behind"


@pytest.fixture(scope="module")
def cookiecutter_without_uv(tmp_path_factory) -> Path:
    """cookiecutter in a venv of its own without uv, as `pipx install cookiecutter` leaves it."""
    venv = tmp_path_factory.mktemp("cookiecutter-only") / "venv"
    uv = tool("uv")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)
    requirement = f"cookiecutter=={metadata.version('cookiecutter')}"
    install = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), requirement]
    subprocess.run(install, check=True, timeout=300)
    return venv / "bin" / "cookiecutter"


def path_without_uv() -> list[str]:
    return [entry for entry in clean_env()["PATH"].split(os.pathsep) if not (Path(entry) / "uv").exists()]


def test_bake_without_uv_fails_with_one_line(cookiecutter_without_uv, tmp_path, cookiecutter_config):
    env = {"PATH": os.pathsep.join(path_without_uv())}
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, env=env, program=cookiecutter_without_uv)
    line = only_error_line(result)
    assert "uv is needed" in line and "pipx inject cookiecutter uv" in line, line
    assert list((tmp_path / "out").iterdir()) == []


def test_bake_finds_uv_on_path(cookiecutter_without_uv, tmp_path, cookiecutter_config):
    """The same cookiecutter with uv on PATH (installed on its own, not in cookiecutter's venv) bakes."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "uv").symlink_to(tool("uv"))
    env = {"PATH": os.pathsep.join([str(tmp_path / "bin"), *path_without_uv()])}
    result = cookiecutter_cli(tmp_path / "out", cookiecutter_config, env=env, program=cookiecutter_without_uv)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "my_service" / "uv.lock").is_file()
