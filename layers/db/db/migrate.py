"""Run the packaged Alembic migrations programmatically (CLI `migrate`, the migration Lambda, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

PACKAGE_DIR = Path(__file__).resolve().parent


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config(str(PACKAGE_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    config.attributes["engine"] = engine
    return config


def upgrade_head(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def downgrade_base(engine: Engine) -> None:
    command.downgrade(alembic_config(engine), "base")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision the packaged migrations define."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
