"""Data loaders: Last.fm HetRec 2011, the generic CSV/Parquet format, and the generated demo shop."""

from __future__ import annotations

from loaders.schema import DataFormatError, Dataset, UnknownItem, UnknownUser


def load_dataset(spec: str, demo_seed: int = 7) -> Dataset:
    """'demo' | 'lastfm:<folder>' | '<folder>' (a Last.fm HetRec folder is recognised by its files)."""
    if spec == "demo":
        from loaders.demo import make_demo

        return make_demo(seed=demo_seed)
    if spec.startswith("lastfm:"):
        from loaders.lastfm import load_lastfm

        return load_lastfm(spec.split(":", 1)[1])
    from pathlib import Path

    folder = Path(spec.removeprefix("generic:"))
    if not spec.startswith("generic:") and (folder / "user_artists.dat").is_file():
        from loaders.lastfm import load_lastfm

        return load_lastfm(folder)
    from loaders.generic import load_generic

    return load_generic(folder)


__all__ = ["Dataset", "DataFormatError", "UnknownItem", "UnknownUser", "load_dataset"]
