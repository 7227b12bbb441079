"""What every service needs, built once in build_application and passed in (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from crypto.keystore import ServerSecrets


@dataclass(frozen=True)
class Core:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secrets: ServerSecrets

    def __repr__(self) -> str:
        return "Core(<settings, engine, secrets>)"
