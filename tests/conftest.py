"""Fixtures shared by several test modules. Each builds fresh state in the test's tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real, open SQLite store in a fresh folder."""
    store = SqliteStore(tmp_path / "webhook.db")
    await store.open()
    yield store
    await store.close()
