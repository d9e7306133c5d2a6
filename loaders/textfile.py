"""Reading delimited text files line by line, with per-line encoding fallback and precise errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loaders.schema import DataFormatError


def read_delimited(path: Path, columns: list[str], sep: str = "\t", fallback_encoding: str = "latin-1") -> pd.DataFrame:
    """Read a header + rows file. Lines that are not valid UTF-8 are decoded with ``fallback_encoding``.

    Raises DataFormatError naming the file and line for missing files, wrong headers and rows with the
    wrong number of fields (a truncated file typically ends in such a row).
    """
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(path, "file is empty", line=1)
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    decoded: list[str] = []
    for raw_line in lines:
        raw_line = raw_line.rstrip(b"\r")
        try:
            decoded.append(raw_line.decode("utf-8"))
        except UnicodeDecodeError:
            decoded.append(raw_line.decode(fallback_encoding, errors="replace"))
    header = decoded[0].split(sep)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(path, f"header lacks column(s) {missing}; found {header}", line=1, column=missing[0])
    width = len(header)
    rows = []
    for number, text in enumerate(decoded[1:], start=2):
        if not text.strip():
            continue
        fields = text.split(sep)
        if len(fields) != width:
            raise DataFormatError(path, f"expected {width} tab-separated fields, found {len(fields)} "
                                        "(truncated or malformed row)", line=number)
        rows.append(fields)
    frame = pd.DataFrame(rows, columns=header)
    return frame[columns]


def to_int_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataFormatError(path, f"not an integer: {frame[column].iloc[row]!r}", line=row + 2, column=column)
    return values.astype("int64")
