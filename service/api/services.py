"""The per-process objects the views hand to the use cases, and who is asking."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g

from service.config import Settings
from service.db.session import Database
from service.usecases.jobs import Publisher
from service.usecases.keys import KeyCache
from service.usecases.models import ModelCache


@dataclass
class Services:
    """The per-process objects the views hand to the use cases."""

    settings: Settings
    database: Database
    publisher: Publisher
    models: ModelCache
    keys: KeyCache

    def close(self) -> None:
        """Release connections (tests and clean shutdowns)."""
        self.database.close()
        close = getattr(self.publisher, "close", None)
        if close is not None:
            close()


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["trainserve"]


def tenant() -> str:
    """The tenant the request authenticated as (see ``service.auth``)."""
    return g.tenant
