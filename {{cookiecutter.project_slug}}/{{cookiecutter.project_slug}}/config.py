"""The api's settings, read once from the environment (and `.env`) and validated at start.

Rule: each resource module declares the variables it reads (resources/); Settings is all of them plus
the app's own, so one object holds every number, and operations/ and tools/ read them from one place.
How the limits bind together, and each setting's reason: docs/concurrency.md.
"""

from functools import lru_cache
from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from sqlalchemy import URL

from .resources.async_database import AsyncDatabaseSettings
from .resources.http_client import HttpClientSettings
{%- if cookiecutter.use_celery == "yes" %}
from .resources.job_queue import JobQueueSettings
{%- endif %}
from .resources.process_pool import ProcessPoolSettings
from .resources.requests_session import RequestsSessionSettings
from .resources.sync_database import SyncDatabaseSettings


class Settings(
    AsyncDatabaseSettings,
    SyncDatabaseSettings,
    HttpClientSettings,
    RequestsSessionSettings,
    ProcessPoolSettings,
{%- if cookiecutter.use_celery == "yes" %}
    JobQueueSettings,
{%- endif %}
):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

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
