"""What the data is and where its state lives, and what may be shown about friends: the catalog's parts of
the top-level settings, which every layer may read."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel


class PrivacySettings(BaseModel):
    friends_detail: Literal["names", "counts"] = "names"


class DataLocation(Protocol):
    """The dataset spec and the state folder (the top-level settings satisfy this)."""

    data: str
    home: Path
    demo_seed: int


def dataset_key(location: DataLocation) -> str:
    """A filesystem-safe name of the configured dataset, used to separate indexes."""
    if location.data == "demo":
        return f"demo-s{location.demo_seed}"
    folder = Path(location.data.split(":", 1)[-1]).resolve()
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:6]
    return f"{folder.name or 'data'}-{digest}"


def index_dir(location: DataLocation) -> Path:
    return location.home / "index" / dataset_key(location)
