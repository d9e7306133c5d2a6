"""Data loaders: Last.fm HetRec 2011, MovieLens, the generic CSV/Parquet format, and the generated demo shop."""

from __future__ import annotations

from loaders.schema import DataFormatError, Dataset, UnknownItem, UnknownUser


def load_dataset(spec: str, demo_seed: int = 7, rating_threshold: float | None = None) -> Dataset:
    """'demo' | 'lastfm:<folder>' | 'movielens:<folder>' | 'generic:<folder>' | '<folder>' (a Last.fm HetRec
    or MovieLens folder is recognised by its files; any other folder is read in the generic format).
    ``rating_threshold`` overrides the loader's positive rule for ratings (Dataset.rating_threshold)."""
    dataset = _load(spec, demo_seed)
    if rating_threshold is not None:
        from dataclasses import replace

        dataset = replace(dataset, rating_threshold=float(rating_threshold))
    return dataset


def _load(spec: str, demo_seed: int) -> Dataset:
    if spec == "demo":
        from loaders.demo import make_demo

        return make_demo(seed=demo_seed)
    if spec.startswith("lastfm:"):
        from loaders.lastfm import load_lastfm

        return load_lastfm(spec.split(":", 1)[1])
    if spec.startswith("movielens:"):
        from loaders.movielens import load_movielens

        return load_movielens(spec.split(":", 1)[1])
    from pathlib import Path

    folder = Path(spec.removeprefix("generic:"))
    if not spec.startswith("generic:") and (folder / "user_artists.dat").is_file():
        from loaders.lastfm import load_lastfm

        return load_lastfm(folder)
    if not spec.startswith("generic:") and (folder / "ratings.csv").is_file() and (folder / "movies.csv").is_file():
        from loaders.movielens import load_movielens

        return load_movielens(folder)
    from loaders.generic import load_generic

    return load_generic(folder)


__all__ = ["Dataset", "DataFormatError", "UnknownItem", "UnknownUser", "load_dataset"]
