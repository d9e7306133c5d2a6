"""`fusionrec index`: embed item texts into Chroma, fit the sources, learn the fusion weights, save.

Re-running is idempotent: the vector store only re-embeds changed texts, and the sources and fusion
are refit only when the data or the source settings changed (the manifest records both).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catalog.stores import Stores, build_stores
from fusion.model import FusionModel
from fusion.recommender import Recommender
from indexing.live_items import replay_catalog_edits
from indexing.settings import IndexConfig
from indexing.training import train_fusion
from loaders import load_dataset
from loaders.schema import Dataset, split_tags
from retrieval.bundle import SourceModels
from storage.catalog_edits import CatalogEditStore
from storage.events import EventStore
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


def build_index(settings: IndexConfig, progress: bool = True, dataset: Dataset | None = None,
                folder: Path | None = None, events_through: int = 0) -> IndexReport:
    """Build (or bring up to date) the index in ``folder`` (default: the configured index folder);
    ``events_through``: the last stored event seq folded into ``dataset`` (recorded in the manifest)."""
    started = time.perf_counter()
    dataset = dataset or load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
    stores = build_stores(dataset)
    vs = VectorStore(settings.vectorstore, settings.home)
    collection = vs.collection_name(settings.dataset_key)
    vectors = vs.sync(collection, list(stores.item_ids), item_texts(stores), item_metadatas(stores), progress=progress)
    folder = folder or settings.index_dir
    manifest = {**_manifest(dataset, settings, collection), "events_through": events_through}
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


def refresh_index(settings: IndexConfig, events: EventStore, progress: bool = True) -> IndexReport:
    """``fusionrec index --refresh``: fold every stored event into the data, fit everything on it in a new
    folder, then point the index folder at it with one atomic rename (a symlink swap), so a process starting
    meanwhile loads either the old index or the new one. A serving process keeps its index in memory (with
    the same events applied live); it loads the new one when it restarts."""
    through = events.last_seq()
    dataset = with_events(load_dataset(settings.data, settings.demo_seed, settings.rating_threshold),
                          events.interactions(through=through))
    current = settings.index_dir
    fresh = current.parent / f"{current.name}@{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    report = build_index(settings, progress, dataset, folder=fresh, events_through=through)
    if current.is_dir():  # calibration files (LLM blend weight, explanation acceptance) carry over
        for path in current.resolve().iterdir():
            if path.is_file() and not (fresh / path.name).exists():
                shutil.copy2(path, fresh / path.name)
    previous = current.resolve() if current.is_symlink() else None
    if current.is_dir() and not current.is_symlink():  # the first refresh: the folder becomes a version
        current.rename(current.parent / f"{current.name}@initial-{os.getpid()}")
        previous = current.parent / f"{current.name}@initial-{os.getpid()}"
    link = current.parent / f".{current.name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(fresh.name)
    os.replace(link, current)
    if previous is not None and previous != fresh:
        shutil.rmtree(previous, ignore_errors=True)  # a process that loaded it keeps its mapped arrays (unlinked files live on)
    return replace(report, path=current)


def load_recommender(settings: IndexConfig, dataset: Dataset | None = None, build_if_missing: bool = False,
                     events: EventStore | None = None, edits: CatalogEditStore | None = None) -> Recommender:
    """Load the index for the configured data (building it first when asked and it is missing or stale).
    With ``edits``: the catalog edits made through the API are replayed in order (items added, replaced,
    withdrawn). With ``events``: the stored events the index folded in (``fusionrec index --refresh``) are part
    of its data; the later ones, and those of items the data files do not hold, are applied as live events."""
    dataset = dataset or load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
    folder = settings.index_dir
    manifest_path = folder / MANIFEST
    stale = True
    through = 0
    if manifest_path.is_file():
        saved = json.loads(manifest_path.read_text())
        through = int(saved.get("events_through", 0)) if events is not None else 0
        if through:
            dataset = with_events(dataset, events.interactions(through=through))  # type: ignore[union-attr]
        stale = saved.get("fingerprint") != dataset.fingerprint() or saved.get("sources") != settings.sources.model_dump()
    live_from_start = pd.DataFrame()
    if events is not None and through:
        early = events.read(through=through)  # folded unless their item is not in the data files (added live)
        live_from_start = early[~early["item_id"].isin(dataset.catalog["item_id"]).to_numpy()]
    if stale:
        if not build_if_missing:
            raise IndexMissing(f"no up-to-date index for '{settings.data}' in {folder}; run `fusionrec index` first")
        build_index(settings, progress=False, dataset=dataset)
    stores = build_stores(dataset)
    vs = VectorStore(settings.vectorstore, settings.home)
    collection = vs.collection_name(settings.dataset_key)
    if vs.count(collection) < stores.n_items - len({e.item_id for e in (edits.read() if edits else [])}):
        # a deleted or half-written Chroma folder (items added or withdrawn live are put right when replayed)
        if build_if_missing:
            build_index(settings, progress=False, dataset=dataset)  # re-embeds only what is missing
        if (held := vs.count(collection)) != stores.n_items:
            raise IndexMissing(f"{settings.home / 'chroma'}: the vector store holds {held} of {stores.n_items} "
                               f"items of '{settings.data}'; run `fusionrec index` first")
    models = SourceModels.load(folder, settings.sources)
    fusion = FusionModel.load(folder / "fusion.json")
    recommender = Recommender(stores, models, fusion, settings, vs, collection)
    if edits is not None:
        replay_catalog_edits(recommender, edits.read())
        if (held := vs.count(collection)) != stores.n_offered:
            raise IndexMissing(f"{settings.home / 'chroma'}: the vector store holds {held} of the {stores.n_offered} "
                               f"items on offer in '{settings.data}'; run `fusionrec index` first")
    if events is not None:
        pending = events.read(after=through)
        stores.live.apply_stored(pd.concat([live_from_start, pending], ignore_index=True) if len(live_from_start)
                                 else pending)
        # read through here: later requests catch up from this seq on (storage/events.py ``catch_up``)
        stores.live.last_seq = max(through, int(pending["seq"].max()) if len(pending) else 0)
    return recommender


def with_events(dataset: Dataset, interactions: pd.DataFrame) -> Dataset:
    """The data with stored live events appended to its interactions (rows naming unknown users or items are
    left out: the catalog may have changed since)."""
    known = interactions["user_id"].isin(dataset.users["user_id"]) & interactions["item_id"].isin(dataset.catalog["item_id"])
    extra = interactions[known.to_numpy()].astype(dataset.interactions.dtypes.to_dict())
    return replace(dataset, interactions=pd.concat([dataset.interactions, extra], ignore_index=True))
