"""Alembic runs migrations with the sync driver: it is a one-shot command, not the event loop.

It connects as the schema owner (POSTGRES_OWNER_USER), the only role allowed DDL; the api and the
worker connect as the app role, which provision.py lets read and write these tables, nothing more.
"""

from alembic import context
from sqlalchemy import create_engine

from {{ cookiecutter.project_slug }}.config import OwnerSettings, load_settings
from {{ cookiecutter.project_slug }}.models import Base

if context.config.config_file_name is not None:
    from logging.config import fileConfig

    fileConfig(context.config.config_file_name)


def run_migrations() -> None:
    engine = create_engine(load_settings(OwnerSettings).owner_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
