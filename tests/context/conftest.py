from __future__ import annotations

import pytest

from actors.context_sources import E5EmbeddingModel


@pytest.fixture(scope="session")
def e5() -> E5EmbeddingModel:
    """The real offline embedding model, loaded once per test session."""
    return E5EmbeddingModel()
