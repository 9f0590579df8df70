"""Settings, read once from the environment (and `.env`) and validated at start.

The concurrency budget lives here, in one place, because these numbers together bound throughput.
Little's law: a route whose requests each hold something for W seconds serves at most
(how many can hold it at once) / W requests per second. Each request holds one unit of every
limit it touches for its whole wait, so the smallest of them binds. Every limit is per api worker
process (WEB_CONCURRENCY of them, serve.py): the pools multiply, and budget.py checks their sum
against PostgreSQL's max_connections before the workers start.

| setting              | what holds one unit for the whole wait                  | binds                  |
|----------------------|---------------------------------------------------------|------------------------|
| THREADPOOL_TOKENS    | a `def` route or dependency, a run_in_threadpool call   | `def` routes, /mixed   |
| SYNC_DB_POOL_SIZE    | a psycopg2 connection; >= tokens so no thread starves   | (the tokens bind first)|
| ASYNC_DB_POOL_SIZE   | an asyncpg connection, held while a query runs          | `async def` + database |
| HTTP_MAX_CONNECTIONS | a socket of the shared httpx.AsyncClient                | `async def` + upstream |
| (requests pool)      | sized to THREADPOOL_TOKENS: one connection per thread   | (the tokens bind first)|
| PROCESS_POOL_WORKERS | a CPU job computing in the web process                  | /cpu/compute           |

What this means for the two keywords:
- Waiting on an upstream: a `def` route holds a thread (40 by default; each costs memory and
  scheduling), an `async def` route holds only a socket, so HTTP_MAX_CONNECTIONS can be far larger
  than the threadpool: 256 waits at once against 40.
- Waiting on the database: both keywords hold a pooled connection, so the pool binds both alike.
  The two pools are the same size by default, and `async def` is no faster here; more connections
  only help if PostgreSQL has them to give (max_connections, shared by every process).
"""

from functools import lru_cache
from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(5432, gt=0, lt=65536)
    # The role the api and the worker connect as: it reads and writes rows, and nothing else
    # (provision.py grants it exactly that; migrate uses the owner's role of OwnerSettings).
    postgres_user: str = "{{ cookiecutter.project_slug }}_app"
    postgres_password: str = ""
    postgres_db: str = "{{ cookiecutter.project_slug }}"
    db_connect_timeout: float = Field(2.0, gt=0, description="seconds to open a connection")
    db_pool_timeout: float = Field(5.0, gt=0, description="seconds to wait for a pooled connection")

    threadpool_tokens: int = Field(40, ge=1, le=1000)
    sync_db_pool_size: int = Field(40, ge=1)
    async_db_pool_size: int = Field(40, ge=1)

    # Processes, and the connections they may hold together (budget.py, serve.py).
    web_concurrency: int | None = Field(
        None, ge=1, le=256, description="api worker processes; unset: one per usable CPU, as many as fit"
    )
    api_replicas: int = Field(1, ge=1, description="api containers or pods sharing this PostgreSQL")
    db_budget_overcommit: bool = Field(
        False, description="start even when the pools may ask for more connections than PostgreSQL has"
    )
    graceful_timeout: int = Field(
        30, ge=1, description="seconds in-flight requests get to finish after SIGTERM"
    )

    upstream_url: str = "http://127.0.0.1:9000"
    upstream_timeout: float = Field(15.0, gt=0, description="seconds before an upstream call gives 504")
    upstream_connect_timeout: float = Field(
        2.0, gt=0, description="seconds to open a connection to the upstream (within UPSTREAM_TIMEOUT)"
    )
    http_max_connections: int = Field(256, ge=1)

    process_pool_workers: int = Field(2, ge=1, le=64)
    cpu_max_n: int = Field(1_000_000, ge=10, description="largest n /cpu/compute accepts")

    # What a client may make the app read, and who may call it from a browser (SECURITY.md). The
    # server's own limits are uvicorn flags in the compose `api` command: idle keep-alive
    # connections close after 5 s; request headers are unbounded under uvicorn's default parser
    # (httptools), so the proxy in front bounds them (SECURITY.md: the deployer's job).
    max_body_bytes: int = Field(
        1_048_576, ge=0, description="largest request body; a larger one gets 413 before it is read whole"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins a browser may call from; empty: CORS off"
    )
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json")
{%- if cookiecutter.use_celery == "yes" %}

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout: float = Field(2.0, gt=0, description="seconds for a Redis connect or command")
    job_max_n: int = Field(10_000_000, ge=10, description="largest n /cpu/jobs accepts")
    job_result_expires: int = Field(
        86_400, ge=60, description="seconds a job stays readable after its last change (submitted, run, done)"
    )
    job_visibility_timeout: int = Field(
        3_600, ge=1, description="seconds before an unacked job is redelivered; above the longest job"
    )
    job_max_deliveries: int = Field(3, ge=1, description="a job that kills its worker this often fails")
    job_queue: str = Field(
        "celery", min_length=1, description="the Redis list jobs wait in: one per deployment sharing a Redis"
    )
    worker_concurrency: int = Field(
        2, ge=1, le=64, description="Celery jobs computing at once per worker process: binds /cpu/jobs"
    )
{%- endif %}

    @field_validator("cors_origins", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    # Seeing the loop in production (metrics.py, watchdog.py, logs.py); cheap enough to leave on.
    observability: bool = Field(True, description="the loop watchdog, /metrics and per-route metrics")
    loop_stall_threshold: float = Field(
        0.1, gt=0, le=60, description="seconds late the event loop must be for a stall report"
    )
    log_format: Literal["json", "console"] = Field("json", description="console: plain text (make dev)")

    @model_validator(mode="after")
    def sync_pool_covers_threadpool(self) -> "Settings":
        if self.sync_db_pool_size < self.threadpool_tokens:
            raise ValueError(
                f"SYNC_DB_POOL_SIZE ({self.sync_db_pool_size}) must be >= THREADPOOL_TOKENS "
                f"({self.threadpool_tokens}), or `def` routes wait on each other for connections"
            )
        return self

    def database_url(self, driver: str, user: str | None = None, password: str | None = None) -> URL:
        """POSTGRES_DB as the app's role, or as `user` with `password`."""
        return URL.create(
            f"postgresql+{driver}",
            username=user or self.postgres_user,
            password=(password if user else self.postgres_password) or None,
            host=self.postgres_host,
            port=self.postgres_port,
            database=self.postgres_db,
        )

    @property
    def libpq_connect_timeout(self) -> int:
        """DB_CONNECT_TIMEOUT as libpq (psycopg2) takes it: whole seconds, at least 1 (0 waits forever)."""
        return max(1, round(self.db_connect_timeout))

    def psycopg2_connect_args(
        self, user: str | None = None, password: str | None = None, database: str | None = None
    ) -> dict[str, object]:
        """`psycopg2.connect(**...)` outside the engines: POSTGRES_DB (or `database`) as the app's role,
        or as `user` with `password`, as database_url() says it."""
        return {
            "host": self.postgres_host,
            "port": self.postgres_port,
            "user": user or self.postgres_user,
            "password": (password if user else self.postgres_password) or None,
            "dbname": database or self.postgres_db,
            "connect_timeout": self.libpq_connect_timeout,
        }


class OwnerSettings(Settings):
    """migrate's settings: the role that owns the schema, so DDL is its job alone."""

    postgres_owner_user: str = "{{ cookiecutter.project_slug }}_owner"
    postgres_owner_password: str = ""

    def owner_url(self) -> URL:
        return self.database_url("psycopg2", self.postgres_owner_user, self.postgres_owner_password)


class AdminSettings(OwnerSettings):
    """provision's settings: a superuser that creates the database and the two roles, then leaves."""

    postgres_admin_user: str = "postgres"
    postgres_admin_password: str = ""


class SettingsError(SystemExit):
    """Exits with one line per bad variable instead of a traceback."""


AnySettings = TypeVar("AnySettings", bound=Settings)


def load_settings(kind: type[AnySettings] = Settings) -> AnySettings:
    try:
        return kind()
    except ValidationError as error:
        lines = [
            f"  {'_'.join(str(part) for part in problem['loc']).upper() or 'SETTINGS'}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise SettingsError("Invalid settings in the environment or .env:\n" + "\n".join(lines)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
