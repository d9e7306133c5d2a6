"""`fusionrec index`: embed item texts into Chroma, fit the sources, learn the fusion weights, save.

Re-running is idempotent: the vector store only re-embeds changed texts, and the sources and fusion
are refit only when the data or the source settings changed (the manifest records both).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catalog.stores import Stores, build_stores
from fusion.model import FusionModel
from fusion.recommender import Recommender
from indexing.settings import IndexConfig
from indexing.training import train_fusion
from loaders import load_dataset
from loaders.schema import Dataset, split_tags
from retrieval.bundle import SourceModels
from vectorstore.store import SyncReport, VectorStore, item_metadata

MANIFEST = "manifest.json"


class IndexMissing(RuntimeError):
    pass


@dataclass
class IndexReport:
    path: Path
    vectors: SyncReport
    refit: bool
    seconds: float
    fusion: FusionModel
    flagged: list[tuple[str, str]] = field(default_factory=list)  # (item id, title) with instruction-like text


def item_texts(stores: Stores) -> list[str]:
    return [stores.item_text(i) for i in range(stores.n_items)]


def item_metadatas(stores: Stores) -> list[dict[str, Any]]:
    return [item_metadata(str(stores.categories[i]), float(stores.prices[i]), split_tags(stores.catalog["tags"].iat[i]))
            for i in range(stores.n_items)]


def _manifest(dataset: Dataset, settings: IndexConfig, collection: str) -> dict[str, Any]:
    return {"fingerprint": dataset.fingerprint(), "dataset": settings.data, "collection": collection,
            "sources": settings.sources.model_dump(), "fusion": settings.fusion.model_dump(exclude={"query_weight"})}


def build_index(settings: IndexConfig, progress: bool = True, dataset: Dataset | None = None) -> IndexReport:
    started = time.perf_counter()
    dataset = dataset or load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
    stores = build_stores(dataset)
    vs = VectorStore(settings.vectorstore, settings.home)
    collection = vs.collection_name(settings.dataset_key)
    vectors = vs.sync(collection, list(stores.item_ids), item_texts(stores), item_metadatas(stores), progress=progress)
    folder = settings.index_dir
    manifest = _manifest(dataset, settings, collection)
    previous = folder / MANIFEST
    up_to_date = (previous.is_file() and json.loads(previous.read_text()) == manifest
                  and (folder / "fusion.json").is_file() and vectors.added + vectors.updated + vectors.removed == 0)
    if up_to_date:
        fusion = FusionModel.load(folder / "fusion.json")
    else:
        embeddings = vs.embeddings(collection, list(stores.item_ids))

        def embeddings_for(split_stores: Stores) -> np.ndarray:
            return vs.embedder.embed(item_texts(split_stores))

        fusion = train_fusion(dataset, settings, embeddings_for)
        models = SourceModels.fit(stores, settings.sources, embeddings)
        folder.mkdir(parents=True, exist_ok=True)
        models.save(folder)
        fusion.save(folder / "fusion.json")
        previous.write_text(json.dumps(manifest, indent=2))
    return IndexReport(path=folder, vectors=vectors, refit=not up_to_date, seconds=time.perf_counter() - started,
                       fusion=fusion,
                       flagged=[(i, stores.titles[stores.item_idx(i)]) for i in stores.flagged_ids])


def load_recommender(settings: IndexConfig, dataset: Dataset | None = None, build_if_missing: bool = False) -> Recommender:
    """Load the index for the configured data (building it first when asked and it is missing or stale)."""
    dataset = dataset or load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
    folder = settings.index_dir
    manifest_path = folder / MANIFEST
    stale = True
    if manifest_path.is_file():
        saved = json.loads(manifest_path.read_text())
        stale = saved.get("fingerprint") != dataset.fingerprint() or saved.get("sources") != settings.sources.model_dump()
    if stale:
        if not build_if_missing:
            raise IndexMissing(f"no up-to-date index for '{settings.data}' in {folder}; run `fusionrec index` first")
        build_index(settings, progress=False, dataset=dataset)
    stores = build_stores(dataset)
    vs = VectorStore(settings.vectorstore, settings.home)
    collection = vs.collection_name(settings.dataset_key)
    if vs.count(collection) != stores.n_items:  # a deleted or half-written Chroma folder
        if build_if_missing:
            build_index(settings, progress=False, dataset=dataset)  # re-embeds only what is missing
        if (held := vs.count(collection)) != stores.n_items:
            raise IndexMissing(f"{settings.home / 'chroma'}: the vector store holds {held} of {stores.n_items} "
                               f"items of '{settings.data}'; run `fusionrec index` first")
    models = SourceModels.load(folder, settings.sources)
    fusion = FusionModel.load(folder / "fusion.json")
    return Recommender(stores, models, fusion, settings, vs, collection)
