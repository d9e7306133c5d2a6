"""Settings of the vector store (the `vectorstore` part of the top-level settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class VectorStoreSettings(BaseModel):
    mode: Literal["embedded", "http"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    collection_prefix: str = "fusionrec"
    batch_size: int = 128
