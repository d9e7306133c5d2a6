"""What the offline build reads from the top-level settings: the data and state folder, and the settings of
the vector store, the sources and the fusion."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fusion.settings import RankConfig
from vectorstore.settings import VectorStoreSettings


class IndexConfig(RankConfig, Protocol):
    data: str
    home: Path
    demo_seed: int
    rating_threshold: float | None

    @property
    def vectorstore(self) -> VectorStoreSettings: ...

    @property
    def dataset_key(self) -> str: ...

    @property
    def index_dir(self) -> Path: ...
