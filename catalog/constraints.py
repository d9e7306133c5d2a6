"""Hard conditions a request may filter on (category, price range, tags, exclusions), vectorised over
the catalog, and the minimal relaxation of tags when nothing meets them all."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np

from catalog.stores import Stores


@dataclass
class Constraints:
    """Hard conditions every recommended item must meet."""

    category: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    tags: list[str] = field(default_factory=list)  # all must be present
    exclude_tags: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    any_categories: list[str] = field(default_factory=list)  # "kitchen or garden": one of them
    any_tags: list[str] = field(default_factory=list)  # "sci-fi or thriller": at least one of them
    brands: list[str] = field(default_factory=list)  # one of these brands
    exclude_brands: list[str] = field(default_factory=list)
    title_words: list[str] = field(default_factory=list)  # "a tent": items whose title says tent
    exclude_title_words: list[str] = field(default_factory=list)  # "no candles"

    def is_empty(self) -> bool:
        return not (self.category or self.price_min is not None or self.price_max is not None or self.tags
                    or self.exclude_tags or self.exclude_categories or self.any_categories or self.any_tags
                    or self.brands or self.exclude_brands or self.title_words or self.exclude_title_words)

    def mask(self, stores: Stores) -> np.ndarray:
        """Boolean mask over all items (vectorised): the items on offer (never a withdrawn one) that meet them."""
        ok = stores.offered()
        if self.category:
            ok &= stores.categories == self.category.lower()
        if self.any_categories:
            ok &= np.isin(stores.categories, [c.lower() for c in self.any_categories])
        for cat in self.exclude_categories:
            ok &= stores.categories != cat.lower()
        prices = stores.prices
        if self.price_min is not None:
            ok &= np.nan_to_num(prices, nan=-np.inf) >= self.price_min
        if self.price_max is not None:
            ok &= np.nan_to_num(prices, nan=np.inf) <= self.price_max
        for tag in self.tags:
            ok &= stores.has_tag(tag)
        if self.any_tags:
            any_of = np.zeros(stores.n_items, bool)
            for tag in self.any_tags:
                any_of |= stores.has_tag(tag)
            ok &= any_of
        for tag in self.exclude_tags:
            ok &= ~stores.has_tag(tag)
        if self.brands:
            ok &= np.isin(stores.brand_keys, [b.lower() for b in self.brands])
        if self.exclude_brands:
            ok &= ~np.isin(stores.brand_keys, [b.lower() for b in self.exclude_brands])
        for word in self.title_words:
            ok &= stores.items_titled(word)
        for word in self.exclude_title_words:
            ok &= ~stores.items_titled(word)
        return ok

    def met_by(self, stores: Stores, item: int) -> list[str]:
        """Human-readable list of the constraints this item meets (for explanations)."""
        met = []
        if self.category and stores.categories[item] == self.category.lower():
            met.append(f"category is {self.category}")
        if self.any_categories and stores.categories[item] in {c.lower() for c in self.any_categories}:
            met.append(f"category is {stores.categories[item]}")
        price, cur = stores.prices[item], stores.dataset.currency
        if self.price_max is not None and not np.isnan(price) and price <= self.price_max:
            met.append(f"price {cur}{price:.2f} is within your {cur}{self.price_max:g} limit")
        if self.price_min is not None and not np.isnan(price) and price >= self.price_min:
            met.append(f"price {cur}{price:.2f} is at least {cur}{self.price_min:g}")
        tags = set(stores.tag_lists[item])
        met.extend(f"tagged '{t}'" for t in [*self.tags, *self.any_tags] if t.lower() in tags)
        if self.brands and stores.brand_keys[item] in {b.lower() for b in self.brands}:
            met.append(f"made by {stores.brands[item]}")
        return met

    def to_dict(self) -> dict[str, object]:
        return {"category": self.category, "price_min": self.price_min, "price_max": self.price_max,
                "tags": list(self.tags), "exclude_tags": list(self.exclude_tags),
                "exclude_categories": list(self.exclude_categories), "any_categories": list(self.any_categories),
                "any_tags": list(self.any_tags), "brands": list(self.brands),
                "exclude_brands": list(self.exclude_brands), "title_words": list(self.title_words),
                "exclude_title_words": list(self.exclude_title_words)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Constraints:
        """From ``to_dict`` output (unknown keys from older sessions are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def relax_tags(constraints: Constraints, stores: Stores) -> list[str]:
    """Drop as few tags as possible so that some item meets the constraints; return the dropped tags.

    Among the kept-tag sets of the largest size that match anything, the one matching the most items wins
    (earlier tags first on ties). Nothing is dropped when the constraints already match; all tags when only
    the other constraints can be met.
    """
    tags = list(constraints.tags)
    for size in range(len(tags), -1, -1):
        best: tuple[int, tuple[str, ...]] | None = None
        for kept in combinations(tags, size):
            matches = int(replace(constraints, tags=list(kept)).mask(stores).sum())
            if matches and (best is None or matches > best[0]):
                best = (matches, kept)
        if best is not None:
            constraints.tags = list(best[1])
            return [t for t in tags if t not in best[1]]
    constraints.tags = []
    return tags
