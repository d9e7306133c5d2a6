"""Index arrays on disk as plain ``.npy`` files, loaded memory-mapped and read-only: every process that loads
the same index folder (several workers, the CLI) reads one copy through the page cache instead of holding
its own. A sparse matrix is its three CSR arrays. Code that changes a model builds new arrays (``resized``,
``with_item``); writing into a loaded array raises, which is the point.

Indexes written before this format (``.npz`` archives, read into memory) still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp


def save_dense(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array))


def load_dense(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def save_csr(folder: Path, name: str, matrix: sp.spmatrix) -> None:
    m = sp.csr_matrix(matrix)
    m.sort_indices()
    for part in ("data", "indices", "indptr"):
        np.save(folder / f"{name}.{part}.npy", getattr(m, part))
    np.save(folder / f"{name}.shape.npy", np.array(m.shape, np.int64))


def load_csr(folder: Path, name: str) -> sp.csr_matrix:
    """The matrix saved by ``save_csr`` (memory-mapped), or the older ``<name>.npz`` (in memory)."""
    if not (folder / f"{name}.shape.npy").is_file():
        return sp.load_npz(folder / f"{name}.npz").tocsr()
    parts = [np.load(folder / f"{name}.{p}.npy", mmap_mode="r") for p in ("data", "indices", "indptr")]
    shape = tuple(int(v) for v in np.load(folder / f"{name}.shape.npy"))
    matrix = sp.csr_matrix(tuple(parts), shape=shape, copy=False)  # type: ignore[arg-type]
    matrix.has_sorted_indices = True  # saved sorted: scipy must not sort (write) the mapped arrays
    return matrix
