"""All fitted candidate sources of one dataset, saved and loaded together with the index."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog.stores import Stores
from retrieval.arrays import load_csr, load_dense, save_csr, save_dense
from retrieval.content import ContentProfile
from retrieval.itemknn import ItemKNN
from retrieval.mf import ALS
from retrieval.registry import REGISTRY, FeedbackSource
from retrieval.settings import SourceSettings
from retrieval.social import FriendsSignal


@dataclass
class SourceModels:
    knn: ItemKNN
    mf: ALS
    social: FriendsSignal
    content: ContentProfile
    registered: dict[str, FeedbackSource] = field(default_factory=dict)  # retrieval/registry.py, by name

    @classmethod
    def fit(cls, stores: Stores, settings: SourceSettings, item_embeddings: np.ndarray) -> SourceModels:
        knn = ItemKNN(settings.knn_neighbours, settings.knn_shrink).fit(stores.feedback)
        mf = ALS(settings.mf_factors, settings.mf_regularization, settings.mf_alpha, settings.mf_iterations,
                 settings.seed, settings.mf_weighting).fit(stores.feedback)
        social = FriendsSignal(settings.social_similarity_weighted).fit(stores.positive, stores.feedback,
                                                                         stores.friends)
        registered = {entry.name: entry.build(settings).fit(stores.feedback) for entry in REGISTRY}
        return cls(knn=knn, mf=mf, social=social, content=ContentProfile(item_embeddings), registered=registered)

    def with_item(self, item: int, embedding: np.ndarray) -> SourceModels:
        """The models after a live catalog edit of ``item`` (its text embedded as ``embedding``): a new item
        (``item`` == the catalog's size) grows every model by one item that no behaviour supports yet (it
        scores 0 in every behavioural source, its text in the content source); a replaced item only gets its
        new text. New objects: the models in use are never changed, so the caller publishes by assignment."""
        content = self.content.with_vector(item, embedding)
        if item < len(self.content.items):
            return SourceModels(knn=self.knn, mf=self.mf, social=self.social, content=content,
                                registered=self.registered)
        n_items = item + 1
        return SourceModels(knn=self.knn.resized(n_items), mf=self.mf.resized(n_items), social=self.social,
                            content=content,
                            registered={name: source.resized(n_items) for name, source in self.registered.items()})

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        assert self.knn.similarity is not None and self.social.friend_weights is not None
        assert self.mf.user_factors is not None and self.mf.item_factors is not None
        save_csr(folder / "knn.npz", self.knn.similarity)
        save_csr(folder / "friend_weights.npz", self.social.friend_weights)
        save_dense(folder / "mf_user.npy", self.mf.user_factors)
        save_dense(folder / "mf_item.npy", self.mf.item_factors)
        save_dense(folder / "item_embeddings.npy", self.content.items)
        for entry in REGISTRY:
            self.registered[entry.name].save(folder / entry.file)

    @classmethod
    def load(cls, folder: Path, settings: SourceSettings) -> SourceModels:
        if (folder / "mf_user.npy").is_file():
            user_factors, item_factors = load_dense(folder / "mf_user.npy"), load_dense(folder / "mf_item.npy")
        else:  # an index written before the memory-mapped format
            mf = np.load(folder / "mf.npz")
            user_factors, item_factors = mf["user"], mf["item"]
        return cls(
            knn=ItemKNN(settings.knn_neighbours, settings.knn_shrink).load(load_csr(folder / "knn.npz")),
            mf=ALS(settings.mf_factors, settings.mf_regularization, settings.mf_alpha, settings.mf_iterations,
                   settings.seed, settings.mf_weighting).load(user_factors, item_factors),
            social=FriendsSignal(settings.social_similarity_weighted).load(load_csr(folder / "friend_weights.npz")),
            content=ContentProfile(load_dense(folder / "item_embeddings.npy")),
            registered={entry.name: entry.build(settings).load(folder / entry.file) for entry in REGISTRY},
        )
