"""Costs that must not grow with the catalog: a typo in a message is corrected by comparing it with a few
catalog words, not the whole vocabulary (synthetic catalog from evals/bench_linker.py)."""

from __future__ import annotations

import pytest
from rapidfuzz.distance import OSA

import agent.linker as linker_module
from agent.linker import EntityLinker
from evals.bench_linker import synthetic_stores


@pytest.fixture(scope="module")
def big_linker() -> EntityLinker:
    stores, _ = synthetic_stores(20_000)
    return EntityLinker(stores)


def test_a_typo_is_corrected_by_comparing_few_catalog_words(big_linker, monkeypatch):
    vocabulary = set(big_linker.vocabulary)
    word, typo = next((w, w[:3] + w[4] + w[3] + w[5:]) for w in big_linker.vocabulary
                      if len(w) == 8 and w[3] != w[4] and (w[:3] + w[4] + w[3] + w[5:]) not in vocabulary)
    compared: list[int] = []
    real = linker_module.process.extractOne

    def counting(query, choices, **kwargs):
        compared.append(len(choices))
        return real(query, choices, **kwargs)

    monkeypatch.setattr(linker_module.process, "extractOne", counting)
    linked = big_linker.link(f"something like {typo} please")
    fixed = linked.corrected.get(2)
    assert fixed is not None and fixed[0] == typo[0] and OSA.distance(fixed, typo) <= 1  # the word meant, or as close
    assert compared and max(compared) < len(big_linker.vocabulary) / 50, (max(compared), len(big_linker.vocabulary))
