"""The connection budget: every process that may hold PostgreSQL connections, against what the server
gives (docs/deployment.md):

    API_REPLICAS x workers x (SYNC_DB_POOL_SIZE + ASYNC_DB_POOL_SIZE) + Celery + migrate
        <= max_connections - superuser_reserved_connections - reserved_connections
"""

from contextlib import closing
from dataclasses import dataclass

import psycopg2

from ..config import Settings

MIGRATE_CONNECTIONS = 1  # alembic holds one connection while it runs (next to the running api, in a deploy)
CELERY_CONNECTIONS = 0  # the jobs compute and use Redis only; a job that queries adds its pool here
SERVER_LIMITS = """
    SELECT current_setting('max_connections')::int,
           current_setting('superuser_reserved_connections')::int,
           coalesce(current_setting('reserved_connections', true), '0')::int
"""  # reserved_connections exists from PostgreSQL 16 on


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    superuser_reserved: int
    reserved: int

    @property
    def available(self) -> int:
        return self.max_connections - self.superuser_reserved - self.reserved

    def __str__(self) -> str:
        held_back = self.superuser_reserved + self.reserved
        return f"{self.available} (max_connections {self.max_connections} - {held_back} reserved)"


def read_server_limits(settings: Settings) -> ServerLimits:
    """What the server gives, read as the app role (any role may read these settings)."""
    connection = psycopg2.connect(**settings.psycopg2_connect_args())
    with closing(connection), connection.cursor() as cursor:
        cursor.execute(SERVER_LIMITS)
        return ServerLimits(*cursor.fetchone())


@dataclass(frozen=True)
class Budget:
    settings: Settings
    workers: int

    @property
    def per_worker(self) -> int:
        return self.settings.sync_db_pool_size + self.settings.async_db_pool_size

    @property
    def needed(self) -> int:
        api = self.settings.api_replicas * self.workers * self.per_worker
        return api + CELERY_CONNECTIONS + MIGRATE_CONNECTIONS

    def fits(self, limits: ServerLimits) -> bool:
        return self.needed <= limits.available

    def explain(self, limits: ServerLimits) -> str:
        """One line with every number: what is asked, how it adds up, what the server gives."""
        settings = self.settings
        relation = "<=" if self.fits(limits) else ">"
        return (
            f"connection budget: {settings.api_replicas} API_REPLICAS x {self.workers} WEB_CONCURRENCY x "
            f"({settings.sync_db_pool_size} SYNC_DB_POOL_SIZE + {settings.async_db_pool_size} "
            f"ASYNC_DB_POOL_SIZE) + {CELERY_CONNECTIONS} Celery + {MIGRATE_CONNECTIONS} migrate = "
            f"{self.needed} {relation} {limits}"
        )


def workers_that_fit(settings: Settings, limits: ServerLimits) -> int:
    """The most api workers whose pools fit (0 if not even one does)."""
    spare = limits.available - CELERY_CONNECTIONS - MIGRATE_CONNECTIONS
    per_worker = Budget(settings, 1).per_worker * settings.api_replicas
    return max(0, spare // per_worker)
