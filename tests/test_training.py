"""Holdout folds that train the fusion: no trace of a held-out (user, item) pair may reach any source."""

from __future__ import annotations

import pytest

from indexing.training import fusion_folds
from loaders import load_dataset
from loaders.tagging import apply_tag_events


def _pairs(frame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"].astype(str), frame["item_id"].astype(str), strict=True))


@pytest.mark.lastfm
def test_every_fusion_fold_forgets_its_held_out_pairs_in_events_and_item_text(lastfm_slice):
    dataset = load_dataset(f"lastfm:{lastfm_slice}")
    folds = fusion_folds(dataset, 0.2, seed=3, folds=3)
    assert len(folds) == 3
    tagged_and_held = 0
    for fold in folds:
        held = _pairs(fold.held)
        assert held and not held & _pairs(fold.train.interactions)
        assert fold.train.tag_events is not None and not held & _pairs(fold.train.tag_events)
        tagged_and_held += len(held & _pairs(dataset.tag_events))
        # Item tags (embedded text, category) are derived from the fold's own events only.
        rebuilt = apply_tag_events(dataset.catalog, fold.train.tag_events)
        assert fold.train.catalog["tags"].tolist() == rebuilt["tags"].tolist()
        assert fold.train.catalog["category"].tolist() == rebuilt["category"].tolist()
    # The check has teeth: some held-out pairs were tagged by their user in the full data.
    assert tagged_and_held > 0
