"""Cases from held-out behaviour: (user, held-out item) pairs of a real dataset become cases whose
expectation is the target item, so a run reports hit rate.

Such a run is only honest on an index built *without* the held-out pairs: the runner builds one with
``holdout_recommender`` (same split, recorded in each case) instead of loading the full index, in which
the targets would be the user's own purchases and therefore filtered out or leaked.
"""

from __future__ import annotations

import numpy as np

from catalog.stores import Stores, build_stores
from fusion.recommender import Recommender
from indexing.build import item_metadatas, item_texts
from indexing.training import holdout, train_fusion
from loaders.schema import Dataset
from promptlab.cases import Case, Expect
from promptlab.settings import LabConfig
from retrieval.bundle import SourceModels
from vectorstore.store import VectorStore

DEFAULT_MESSAGE = "What would you recommend for me?"


def generate_cases(dataset: Dataset, n: int, seed: int, fraction: float = 0.2, message: str = DEFAULT_MESSAGE,
                   data: str | None = None, k: int | None = None, demo_seed: int | None = None) -> list[Case]:
    """``n`` cases, one per sampled user, each targeting one of that user's held-out items.

    The split is ``indexing.training.holdout(dataset, fraction, seed)``; ``message`` may use
    ``{category}`` (the target's category) to simulate a shopper who says what kind of thing they want.
    ``data`` is the settings value that loads ``dataset`` ("demo" or a folder); it is recorded in every
    case so a run can refuse to score them on other data.
    """
    split = holdout(dataset, fraction, seed)
    if split.held.empty:
        raise ValueError(f"no user of {dataset.name} has enough positive items for a holdout")
    rng = np.random.default_rng(seed)
    users = np.array(sorted(split.held["user_id"].astype(str).unique()))
    chosen = np.sort(rng.choice(users, size=min(n, len(users)), replace=False))
    categories = dict(zip(dataset.catalog["item_id"].astype(str), dataset.catalog["category"].astype(str), strict=True))
    spec = {"data": data or dataset.name, "fraction": fraction, "seed": seed}
    if demo_seed is not None:
        spec["demo_seed"] = demo_seed
    held = split.held.astype({"user_id": str, "item_id": str})
    cases = []
    for user in chosen:
        items = sorted(held.loc[held["user_id"] == user, "item_id"])
        target = items[int(rng.integers(len(items)))]
        text = message.format(category=categories.get(target) or "anything")
        cases.append(Case(id=f"holdout-{user}-{target}", user=str(user), message=text,
                          expect=Expect(kind="recommendations", targets=[target]), k=k,
                          labels=["holdout"], holdout=dict(spec),
                          description=f"held-out purchase {target} of {user} (split seed {seed}, {fraction:g})"))
    return cases


def holdout_recommender(settings: LabConfig, dataset: Dataset, fraction: float, seed: int) -> Recommender:
    """A Recommender on ``holdout(dataset, fraction, seed).train`` (like evals/offline.py): sources, fusion
    weights and the vector collection all built without the held-out pairs."""
    split = holdout(dataset, fraction, seed)
    stores = build_stores(split.train)
    vs = VectorStore(settings.vectorstore, settings.home)
    collection = vs.collection_name(f"{settings.dataset_key}-holdout-s{seed}-f{round(fraction * 100)}")
    ids = [str(i) for i in stores.item_ids]
    vs.sync(collection, ids, item_texts(stores), item_metadatas(stores), progress=False)

    def embed(split_stores: Stores) -> np.ndarray:
        return vs.embedder.embed(item_texts(split_stores), progress=False)

    models = SourceModels.fit(stores, settings.sources, vs.embeddings(collection, ids))
    fusion = train_fusion(split.train, settings, embed)
    return Recommender(stores, models, fusion, settings, vs, collection)
