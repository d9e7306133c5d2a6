"""What `fusionrec eval --llm` measured for a model, saved next to the index and keyed by the model's
identity (file hash or endpoint), so another model never inherits it: the blend weight chosen on
validation users, and the share of its explanation phrasings the grounding check accepted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CALIBRATION = "llm_calibration.json"


@dataclass(frozen=True)
class Calibration:
    weight: float | None = None  # None: never calibrated
    explain_acceptance: float | None = None  # accepted / proposed phrasings; None: never measured
    explain_proposed: int = 0


def _entries(index_dir: Path) -> dict[str, dict[str, object]]:
    path = index_dir / CALIBRATION
    return json.loads(path.read_text()) if path.is_file() else {}


def load_calibration(index_dir: Path, identity: str) -> Calibration:
    entry = _entries(index_dir).get(identity)
    if entry is None:
        return Calibration()
    acceptance = entry.get("explain_acceptance")
    return Calibration(weight=None if entry.get("weight") is None else float(entry["weight"]),  # type: ignore[arg-type]
                       explain_acceptance=None if acceptance is None else float(acceptance),  # type: ignore[arg-type]
                       explain_proposed=int(entry.get("explain_proposed", 0)))  # type: ignore[call-overload]


def load_blend_weight(index_dir: Path, identity: str) -> float | None:
    return load_calibration(index_dir, identity).weight


def _write(index_dir: Path, data: dict[str, dict[str, object]]) -> None:
    index_dir.mkdir(parents=True, exist_ok=True)
    (index_dir / CALIBRATION).write_text(json.dumps(data, indent=2))


def save_blend_weight(index_dir: Path, identity: str, weight: float, details: dict[str, object]) -> None:
    data = _entries(index_dir)
    data[identity] = {"weight": weight, **details}
    _write(index_dir, data)


def save_explain_acceptance(index_dir: Path, identity: str, accepted: int, proposed: int) -> None:
    """Record how many of the model's proposed phrasings the grounding check accepted (kept with its weight)."""
    data = _entries(index_dir)
    entry = data.setdefault(identity, {"weight": None})
    entry["explain_acceptance"] = round(accepted / proposed, 4) if proposed else None
    entry["explain_proposed"] = proposed
    _write(index_dir, data)
