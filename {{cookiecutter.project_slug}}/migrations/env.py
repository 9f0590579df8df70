"""Alembic runs migrations with the sync driver: it is a one-shot command, not the event loop."""

from alembic import context
from sqlalchemy import create_engine

from {{ cookiecutter.project_slug }}.config import get_settings
from {{ cookiecutter.project_slug }}.models import Base

if context.config.config_file_name is not None:
    from logging.config import fileConfig

    fileConfig(context.config.config_file_name)


def run_migrations() -> None:
    engine = create_engine(get_settings().database_url("psycopg2"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
