"""The generic format: a folder with catalog, interactions and social tables as CSV or Parquet.

    catalog.{csv,parquet}       item_id*, title*, category, tags (a|b|c), description, price
    interactions.{csv,parquet}  user_id*, item_id*, kind (view|click|purchase|...), weight, timestamp (ISO 8601)
    social.{csv,parquet}        user_id*, friend_id*            (optional; friendship is symmetric)
    users.{csv,parquet}         user_id*, name                  (optional; display names)

Columns marked * are required. Errors name the file, the line (header = line 1) and the column.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from loaders.schema import (
    CATALOG_COLUMNS,
    INTERACTION_COLUMNS,
    SOCIAL_COLUMNS,
    USER_COLUMNS,
    DataFormatError,
    Dataset,
    coerce,
    finalize,
)


def _find(folder: Path, stem: str, required: bool) -> Path | None:
    for ext in (".parquet", ".csv"):
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    if required:
        raise DataFormatError(folder / f"{stem}.csv", f"missing: expected {stem}.csv or {stem}.parquet in {folder}")
    return None


def read_table(path: Path) -> pd.DataFrame:
    """Read one CSV (strict UTF-8) or Parquet file into strings, with errors naming file and line."""
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise DataFormatError(path, f"not a readable Parquet file ({exc.__class__.__name__}: {exc})") from exc
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                              line=line) from exc
    if not text.strip():
        raise DataFormatError(path, "file is empty", line=1)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataFormatError(path, f"expected {len(header)} comma-separated fields, found {len(row)} "
                                            "(malformed or truncated row)", line=reader.line_num)
            rows.append(row)
    except csv.Error as exc:
        raise DataFormatError(path, f"malformed CSV: {exc}", line=reader.line_num) from exc
    frame = pd.DataFrame(rows, columns=header, dtype=object).replace({"": None})
    return frame


def load_generic(folder: str | Path, name: str | None = None) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "data folder not found")
    paths: dict[str, str | Path] = {}
    catalog_path = _find(folder, "catalog", True)
    interactions_path = _find(folder, "interactions", True)
    assert catalog_path and interactions_path
    paths["catalog"], paths["interactions"] = catalog_path, interactions_path
    catalog = coerce(read_table(catalog_path), CATALOG_COLUMNS, catalog_path, "catalog")
    interactions = coerce(read_table(interactions_path), INTERACTION_COLUMNS, interactions_path, "interactions")
    social_path = _find(folder, "social", False)
    if social_path is not None:
        social = coerce(read_table(social_path), SOCIAL_COLUMNS, social_path, "social")
        paths["social"] = social_path
    else:
        social = pd.DataFrame({"user_id": pd.Series(dtype="string"), "friend_id": pd.Series(dtype="string")})
        paths["social"] = folder / "social.csv"
    users_path = _find(folder, "users", False)
    users = None
    if users_path is not None:
        users = coerce(read_table(users_path), USER_COLUMNS, users_path, "users")
        paths["users"] = users_path
    kinds = tuple(sorted(interactions["kind"].dropna().str.lower().unique())) or ("purchase",)
    positive = tuple(k for k in kinds if k in {"purchase", "like", "listen", "rating", "order"}) or kinds
    weights = {"view": 0.2, "click": 0.5}
    verbs = {"purchase": "bought", "order": "ordered", "like": "liked", "listen": "listened to", "rating": "rated"}
    # Ratings: positive from 80% of the highest rating in the file up (4 of 5 stars, 8 of 10).
    rated = interactions.loc[interactions["kind"].str.lower() == "rating", "weight"].dropna()
    threshold = 0.8 * float(rated.max()) if len(rated) else None
    return finalize(name or folder.resolve().name, catalog, interactions, social, users, paths,
                    positive_kinds=positive, kind_weights={k: weights.get(k, 1.0) for k in kinds},
                    rating_threshold=threshold,
                    interaction_verb=verbs.get(positive[0], "chose") if positive else "chose")


def write_generic(dataset: Dataset, folder: str | Path, fmt: str = "csv") -> Path:
    """Write a Dataset in the generic format (used to export the demo data and by tests)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"catalog": dataset.catalog, "interactions": dataset.interactions, "social": dataset.social,
              "users": dataset.users}
    for stem, frame in tables.items():
        if fmt == "parquet":
            frame.to_parquet(folder / f"{stem}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{stem}.csv", index=False)
    return folder
