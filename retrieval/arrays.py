"""Index arrays on disk as plain ``.npy`` files, loaded memory-mapped and read-only: every process that loads
the same index folder (several workers, the CLI) reads one copy through the page cache instead of holding
its own. A sparse matrix is its three CSR arrays. Code that changes a model builds new arrays (``resized``,
``with_item``); writing into a loaded array raises, which is the point.

Indexes written before this format (``.npz`` archives, read into memory) still load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def save_dense(path: Path, array: np.ndarray) -> None:
    """Written to a temporary file, then renamed over ``path``: a process that maps the old file keeps reading it
    (truncating a mapped file in place would crash that process on its next read)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array))
    os.replace(tmp, path)


def load_dense(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def save_csr(path: Path, matrix: sp.spmatrix) -> None:
    """``path`` (``<name>.npz``) holds the shape; the three CSR arrays are ``<name>.data.npy`` and so on."""
    m = sp.csr_matrix(matrix)
    m.sort_indices()
    for part in ("data", "indices", "indptr"):
        save_dense(path.with_suffix(f".{part}.npy"), getattr(m, part))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, shape=np.array(m.shape, np.int64))
    os.replace(tmp, path)


def load_csr(path: Path) -> sp.csr_matrix:
    """The matrix saved by ``save_csr`` (memory-mapped), or one saved by scipy's ``save_npz`` (in memory)."""
    with np.load(path) as saved:
        if "data" in saved.files:  # written before the memory-mapped format
            return sp.load_npz(path).tocsr()
        shape = tuple(int(v) for v in saved["shape"])
    parts = [np.load(path.with_suffix(f".{p}.npy"), mmap_mode="r") for p in ("data", "indices", "indptr")]
    matrix = sp.csr_matrix(tuple(parts), shape=shape, copy=False)  # type: ignore[arg-type]
    matrix.has_sorted_indices = True  # saved sorted: scipy must not sort (write) the mapped arrays
    return matrix
