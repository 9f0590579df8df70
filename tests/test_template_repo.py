"""The template repo's own files: options, README, CI script, the root compose file, the tests' lint."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from cookiecutter.environment import StrictEnvironment

from .conftest import (
    COOKIECUTTER_JSON,
    DEFAULTS,
    MEASURE_YOURS,
    OPTION_SETS,
    ROOT,
    TEMPLATE_DIR,
    answers,
    clean_env,
    option_id,
    tool,
)
from .test_generated_suites import RUN_BAKES

OPTIONS = [key for key in COOKIECUTTER_JSON if not key.startswith("_")]
README = (ROOT / "README.md").read_text()
README_MAX_LINES = 150
FIRST_SCREEN_LINES = 40
# The default bake (the benchmark page without its JSON), and the one with every option flipped (no
# Celery, the benchmark with its JSON).
LINK_CHECKED_BAKES = [{}, {"use_celery": "no", "include_benchmarks": "yes", "python_version": "3.11"}]
YES_NO_OPTIONS = ["use_celery", "include_benchmarks"]
BENCHMARK_ROUTES = ["/async/db-wait", "/sync/db-wait", "/anti/db-wait", "/mixed/report", "/cpu/compute"]
# A measured figure: a rate, or a target's verdict line. Settings (100 ms, 0.5 s) are not figures.
FIGURE = re.compile(r"\d[\d,.]*\s*(?:req|jobs)/s|^- (?:MISSED|met):", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")


# The page and its JSON, as bench/page.py names them (run from the template's source, not imported).
BENCH_PAGE = "benchmark.md"
BENCH_DATA = "benchmark.json"


def measured_figures(text: str) -> list[str]:
    return FIGURE.findall(text)


def broken_links(markdown: Path) -> list[str]:
    """Relative links of a Markdown file whose target file does not exist (anchors not checked)."""
    targets = [unquote(target.split("#", 1)[0]) for target in LINK.findall(markdown.read_text())]
    return [
        target
        for target in targets
        if target and "://" not in target and not (markdown.parent / target).exists()
    ]


def render_check(docs: Path) -> subprocess.CompletedProcess:
    """bench/page.py of the template, run from its source: the page against its JSON, in `docs`."""
    argv = [sys.executable, "-m", "bench.page", "--check", str(docs / BENCH_DATA), str(docs)]
    env = {**clean_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(argv, cwd=TEMPLATE_DIR, env=env, capture_output=True, text=True, timeout=60)


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


def covered(option_sets: list[dict[str, str]]) -> dict[str, set[str]]:
    """Each yes/no option -> the answers these option sets bake with (defaults filled in)."""
    return {option: {answers(options)[option] for options in option_sets} for option in YES_NO_OPTIONS}


def test_option_sets_cover_yes_and_no():
    """The benchmark is off by default; the baked checks and the generated suites still see yes and no
    of each option, and a suite that runs the quick benchmark asks for it."""
    assert DEFAULTS["include_benchmarks"] == "no" and DEFAULTS["use_celery"] == "yes"
    every = {option: {"yes", "no"} for option in YES_NO_OPTIONS}
    assert {option: set(COOKIECUTTER_JSON[option]) for option in YES_NO_OPTIONS} == every
    assert covered(OPTION_SETS) == every
    suites = [options for options, _, _ in RUN_BAKES]
    assert covered(suites) == every
    real_servers = [options for options, servers, _ in RUN_BAKES if servers == "as given"]
    assert "yes" in covered(real_servers)["include_benchmarks"], "no generated suite runs the benchmark"
    # Negative control: the suites as they were picked when the default bake had the benchmark.
    assert covered([{}, {"use_celery": "no", "include_benchmarks": "no"}])["include_benchmarks"] == {"no"}


def test_one_command_to_measure_your_machine():
    """Wherever the template says how to measure your own machine, it gives the same command."""
    page = (TEMPLATE_DIR / "docs" / BENCH_PAGE).read_text()
    renderer = (TEMPLATE_DIR / "bench" / "page.py").read_text()
    for name, text in {"README.md": README, BENCH_PAGE: page, "bench/page.py": renderer}.items():
        assert MEASURE_YOURS in text, f"{name} does not say: {MEASURE_YOURS}"
    assert "Run `make bench` to measure" not in page  # the old wording, for a bake that had the bench


def test_readme_first_screen_has_the_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    generate, test = commands
    assert "cookiecutter --no-input" in generate and generate.rstrip().endswith("make dev")
    assert test == ci_test_command(), ".ci/run must run exactly README's test command"


def test_readmes_are_short_and_the_pattern_table_comes_first(baked):
    assert len(README.splitlines()) <= README_MAX_LINES
    for options in LINK_CHECKED_BAKES:
        readme = (baked(**options) / "README.md").read_text().splitlines()
        assert len(readme) <= README_MAX_LINES, options
        table = readme.index("## Which pattern do I copy?")
        assert table < FIRST_SCREEN_LINES and readme[table + 2].startswith("| work | keyword |"), options


def test_readmes_link_the_benchmark_page_and_copy_no_figure():
    generated = TEMPLATE_DIR / "README.md"
    assert "(%7B%7Bcookiecutter.project_slug%7D%7D/docs/benchmark.md)" in README
    assert "(docs/benchmark.md)" in generated.read_text()
    prose = [ROOT / "README.md", generated, *(path for path in (TEMPLATE_DIR / "docs").glob("*.md"))]
    copied = {
        str(path.relative_to(ROOT)): measured_figures(path.read_text())
        for path in prose
        if path.name != BENCH_PAGE
    }
    assert not {path: found for path, found in copied.items() if found}, (
        f"figures belong on {BENCH_PAGE} only: {copied}"
    )


def test_a_hand_copied_figure_is_caught():
    """The negative control: the lines the READMEs held before the page existed."""
    assert measured_figures("| `routers/cpu.py` | 15.1 jobs/s of 122 ms on 2 processes |")
    assert measured_figures("upstream: 193 / 376 / 462 req/s at 100 / 200 / 400 in flight")
    assert measured_figures("- MISSED: the template's trivial route is within 10% of bare FastAPI")
    assert not measured_figures("`LOOP_STALL_THRESHOLD` (100 ms) is logged once; 40 threads / 0.5 s")


def test_benchmark_page_has_every_pattern_row():
    page = (TEMPLATE_DIR / "docs" / BENCH_PAGE).read_text()
    rows = " ".join(line for line in page.splitlines() if line.startswith("| "))
    for route in BENCHMARK_ROUTES:
        assert f"`GET {route}" in rows or f"`POST {route}" in rows, f"{BENCH_PAGE} has no {route} row"


def test_benchmark_page_is_what_its_json_renders(tmp_path):
    docs = TEMPLATE_DIR / "docs"
    assert render_check(docs).returncode == 0, render_check(docs).stderr
    # Negative controls: one figure changed in the JSON, or in the page, is caught.
    edited = shutil.copytree(docs, tmp_path / "json-edited")
    data = json.loads((edited / BENCH_DATA).read_text())
    data["rows"][0]["rps"] *= 2
    (edited / BENCH_DATA).write_text(json.dumps(data))
    assert render_check(edited).returncode == 1
    edited = shutil.copytree(docs, tmp_path / "page-edited")
    lines = (edited / BENCH_PAGE).read_text().splitlines()
    first_row = next(number for number, line in enumerate(lines) if line.startswith("| 1 | "))
    cells = lines[first_row].split(" | ")
    cells[4] = "9,999"  # #, section, pattern, route, req/s
    lines[first_row] = " | ".join(cells)
    (edited / BENCH_PAGE).write_text("\n".join(lines) + "\n")
    assert render_check(edited).returncode == 1


@pytest.mark.parametrize("options", LINK_CHECKED_BAKES, ids=option_id)
def test_every_link_resolves_in_a_bake(baked, options):
    project = baked(**options)
    broken = [
        f"{path.relative_to(project)}: {target}"
        for path in sorted(project.rglob("*.md"))
        if ".venv" not in path.parts
        for target in broken_links(path)
    ]
    assert not broken, broken


def test_every_link_of_the_template_readme_resolves():
    assert not broken_links(ROOT / "README.md")


def test_a_broken_link_is_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("")
    page.write_text("[ok](there.md#a) [web](https://example.com) [top](#b) [gone](docs/gone.md)")
    assert broken_links(page) == ["docs/gone.md"]


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
