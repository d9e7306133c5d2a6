"""Dialogue acts: what a message asks for (a recommendation, items like one, a comparison, a question about
an item or the catalog, friends' picks, a refinement of the last list, something out of scope).

The classifier is the nearest labelled examples (``prompts/<set>/acts.yaml``) in the bundled MiniLM
embedding space, on the message with its catalog names masked (ITEM, BRAND, CATEGORY, TAG, PRICE), so
the same examples serve every catalog and it works offline with no LLM. The intent parser combines it
with deterministic cues, which win when they are unambiguous.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ACTS = ("recommend", "similar", "compare", "item_question", "catalog_question", "friends", "refine",
        "out_of_scope")
Embed = Callable[[list[str]], np.ndarray]


class ExemplarError(ValueError):
    pass


def load_exemplars(prompts_dir: Path, prompt_set: str = "default") -> dict[str, list[str]]:
    path = prompts_dir / prompt_set / "acts.yaml"
    if not path.is_file():
        path = prompts_dir / "default" / "acts.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not data:
        raise ExemplarError(f"{path}: expected a mapping of dialogue act -> list of example messages")
    unknown = sorted(set(data) - set(ACTS))
    if unknown:
        raise ExemplarError(f"{path}: unknown dialogue acts {unknown}; known: {list(ACTS)}")
    out = {}
    for act, examples in data.items():
        if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
            raise ExemplarError(f"{path}: '{act}' must be a list of non-empty strings")
        out[str(act)] = [str(e).strip() for e in examples]
    return out


@dataclass(frozen=True)
class ActGuess:
    act: str
    score: float  # weighted share of the nearest examples that vote for it (0..1)
    similarity: float  # cosine to the nearest example of that act


class ActClassifier:
    def __init__(self, embed: Embed, exemplars: dict[str, list[str]], k: int = 7):
        self.embed = embed
        self.k = k
        self.labels = [act for act, examples in exemplars.items() for _ in examples]
        texts = [e for examples in exemplars.values() for e in examples]
        vectors = embed(texts) if texts else np.zeros((0, 384), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
        self.vectors = (vectors / norms).astype(np.float32)

    def classify(self, masked_message: str) -> ActGuess:
        if not self.labels:
            return ActGuess("recommend", 0.0, 0.0)
        vector = self.embed([masked_message])[0]
        vector = vector / (np.linalg.norm(vector) + 1e-9)
        sims = self.vectors @ vector
        top = np.argsort(-sims, kind="stable")[: self.k]
        votes: dict[str, float] = {}
        best: dict[str, float] = {}
        for j in top:
            act, sim = self.labels[j], float(sims[j])
            votes[act] = votes.get(act, 0.0) + max(sim, 0.0) ** 2
            best[act] = max(best.get(act, -1.0), sim)
        total = sum(votes.values()) or 1.0
        act = max(votes, key=lambda a: (votes[a], best[a]))
        return ActGuess(act, votes[act] / total, best[act])
