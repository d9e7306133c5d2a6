"""The LLM's blend weight chosen on validation users by `fusionrec eval --llm`, saved next to the index and
keyed by the model's identity (file hash or endpoint), so another model never inherits it."""

from __future__ import annotations

import json
from pathlib import Path

CALIBRATION = "llm_calibration.json"


def load_blend_weight(index_dir: Path, identity: str) -> float | None:
    path = index_dir / CALIBRATION
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get(identity)
    return None if entry is None else float(entry["weight"])


def save_blend_weight(index_dir: Path, identity: str, weight: float, details: dict[str, object]) -> None:
    path = index_dir / CALIBRATION
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[identity] = {"weight": weight, **details}
    index_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
