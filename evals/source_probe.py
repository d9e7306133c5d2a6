"""`fusionrec probe-sources`: would another candidate source make the fusion better? VALIDATION only.

Protocol (the same seeded splits as `fusionrec eval`; TEST is held out and never read):
1. Each extra source (evals/extra_sources.py) is tuned alone on VALIDATION with models fit on TRAIN,
   like every baseline. The shipped sources use the settings tuned by an earlier `fusionrec eval`
   (``--sources-from`` its JSON) or are tuned here.
2. The fusion's training rows come from ``fusion.folds`` seeded holdout folds of TRAIN (none holds a
   VALIDATION item). Every candidate pool is the union of the shipped sources' and every extra source's
   top ``per_source`` items, so all variants rank the same candidates.
3. Variants differ only in the evidence the ranker sees: ``fusion`` (the shipped features), one
   ``fusion+<source>`` per extra source (its five evidence views added), and ``fusion+all``; same
   learner, same rows, same seed. All are scored on the VALIDATION users, ties by item index.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catalog.scope import scope_for
from catalog.stores import Stores, build_stores
from config.settings import Settings
from evals.baselines import Baseline
from evals.extra_sources import ExtraSource, extra_source_grids
from evals.metrics import RankingMetrics, top_items
from evals.offline import (
    EvalContext,
    MethodResult,
    prepare,
    relevant_sets,
    source_settings_from,
    tune_baselines,
)
from fusion.candidates import allowed_mask, build_pool, evidence_columns, top_n
from fusion.model import FusionModel, fit_ranker
from fusion.request import RecommendRequest
from indexing.training import fusion_folds
from loaders.schema import Dataset
from retrieval.bundle import SourceModels
from vectorstore.embeddings import MiniLMEmbeddingFunction

Log = Callable[[str], None]


@dataclass
class PoolRows:
    """Candidates of one user: the shipped features and each extra source's evidence views."""

    items: np.ndarray
    base: np.ndarray
    extra: dict[str, np.ndarray]


def pool_rows(stores: Stores, models: SourceModels, extra_scores: dict[str, np.ndarray], user: int,
              per_source: int) -> PoolRows:
    """The user's pool (shipped sources plus every extra source's top items) and its evidence columns;
    ``extra_scores`` holds each extra source's scores over the whole catalog for this user."""
    scope = scope_for(stores, str(stores.user_ids[user]))
    request = RecommendRequest(user_id=scope.user_id, exclude_seen="all")
    allowed = allowed_mask(scope, request)
    joined = [top_n(scores, allowed, per_source) for scores in extra_scores.values()]
    pool = build_pool(scope, models, request, per_source,
                      extra_items=np.unique(np.concatenate(joined)).tolist() if joined else None)
    views = {name: np.column_stack(evidence_columns(scores, allowed, pool.items))
             for name, scores in extra_scores.items()}
    return PoolRows(pool.items, pool.features, views)


def variant_matrix(rows: PoolRows, variant: str) -> np.ndarray:
    if variant == "fusion":
        return rows.base
    names = list(rows.extra) if variant == "fusion+all" else [variant.removeprefix("fusion+")]
    return np.hstack([rows.base, *(rows.extra[n] for n in names)])


def tune_extras(ctx: EvalContext, quick: bool, max_users: int | None, seed: int, log: Log
                ) -> dict[str, tuple[type[Baseline], dict[str, Any], float]]:
    """The extra sources that this data supports, tuned alone on VALIDATION like every baseline."""
    grids = {}
    for name, (cls, grid) in extra_source_grids(quick).items():
        if cls.available(ctx.train):
            grids[name] = (cls, grid)
        else:
            log(f"{name}: not available on this data (no tag events); skipped")
    return tune_baselines(ctx, quick, max_users, seed, log, grids)


def fit_extras(stores: Stores, best: dict[str, tuple[type[Baseline], dict[str, Any], float]]
               ) -> tuple[dict[str, ExtraSource], dict[str, float]]:
    sources, seconds = {}, {}
    for name, (cls, params, _) in best.items():
        t = time.perf_counter()
        source = cls(name, dict(params))
        assert isinstance(source, ExtraSource), "tune_extras tunes extra sources only"
        sources[name] = source.fit(stores)
        seconds[name] = time.perf_counter() - t
    return sources, seconds


def run_probe(dataset: Dataset, settings: Settings, embedder: MiniLMEmbeddingFunction, quick: bool = False,
              max_users: int | None = None, tuned_sources: dict[str, Any] | None = None,
              log: Log = print) -> list[MethodResult]:
    seed = settings.sources.seed
    started = time.perf_counter()
    ctx = prepare(dataset, settings, embedder, log)
    if tuned_sources:
        tuned = settings.model_copy(update={"sources": settings.sources.model_copy(update=tuned_sources)})
        log(f"shipped sources: settings tuned by an earlier eval run: {tuned_sources}")
    else:
        tuned = source_settings_from(settings, tune_baselines(ctx, quick, max_users, seed, log))
    per_source = tuned.sources.per_source
    best = tune_extras(ctx, quick, max_users, seed, log)
    variants = ["fusion", *(f"fusion+{name}" for name in best), *(["fusion+all"] if len(best) > 1 else [])]

    # Training rows from folds of TRAIN only (seeded apart from the VALIDATION split).
    rows: list[PoolRows] = []
    labels: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    folds = [s for s in fusion_folds(ctx.train_dataset, tuned.fusion.validation_fraction, seed + 2,
                                     tuned.fusion.folds) if not s.held.empty]
    for k, split in enumerate(folds):
        stores = build_stores(split.train)
        models = SourceModels.fit(stores, tuned.sources, ctx.embed(stores))
        extras, _ = fit_extras(stores, best)
        for user, targets in relevant_sets(stores, split.held, None, seed).items():
            r = pool_rows(stores, models, {n: e.score(user) for n, e in extras.items()}, user, per_source)
            rows.append(r)
            labels.append(np.isin(r.items, list(targets)))
            groups.append(np.full(len(r.items), len(groups)))  # one group per (fold, user)
        log(f"fold {k + 1}/{len(folds)}: {len(split.held)} held-out pairs ({time.perf_counter() - started:.0f}s)")
    y, g = np.concatenate(labels), np.concatenate(groups)
    rankers = {v: _fit(np.vstack([variant_matrix(r, v) for r in rows]), y, g, tuned, seed) for v in variants}
    log(f"fitted {len(rankers)} fusion variants on {len(y)} rows ({time.perf_counter() - started:.0f}s)")

    # Scoring on VALIDATION: sources (shipped and extra) fit on TRAIN.
    stores = ctx.train
    models = SourceModels.fit(stores, tuned.sources, ctx.embed(stores))
    extras, fit_seconds = fit_extras(stores, best)
    relevant = relevant_sets(stores, ctx.validation, max_users, seed)
    metrics = {v: RankingMetrics() for v in variants}
    alone = {name: RankingMetrics() for name in ["mf-als", *best]}
    score_ms: dict[str, list[float]] = {name: [] for name in best}
    pool_sizes = []
    for user, items in relevant.items():
        seen = stores.feedback[user].indices
        alone["mf-als"].add(top_items(models.mf.score(user), seen, 20), items)
        extra_scores = {}
        for name, source in extras.items():
            t = time.perf_counter()
            extra_scores[name] = source.score(user)
            score_ms[name].append((time.perf_counter() - t) * 1000)
            alone[name].add(top_items(extra_scores[name], seen, 20), items)
        r = pool_rows(stores, models, extra_scores, user, per_source)
        pool_sizes.append(len(r.items))
        for v in variants:
            score = rankers[v](variant_matrix(r, v))
            metrics[v].add(r.items[np.lexsort((r.items, -score))][:20], items)
    results = [MethodResult(name, m.summary(stores.n_items), params=best[name][1] if name in best else {},
                            extra=_cost(name, fit_seconds, score_ms)) for name, m in alone.items()]
    results += [MethodResult(v, m.summary(stores.n_items), extra={"mean_pool": round(float(np.mean(pool_sizes)), 1)})
                for v, m in metrics.items()]
    log(f"probe done in {time.perf_counter() - started:.0f}s")
    return results


def _cost(name: str, fit_seconds: dict[str, float], score_ms: dict[str, list[float]]) -> dict[str, Any]:
    if name not in fit_seconds:
        return {}
    return {"fit_s": round(fit_seconds[name], 2), "score_p95_ms": round(float(np.percentile(score_ms[name], 95)), 3)}


def _fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: Settings,
         seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The shipped learner (agent/fusion.py) on any feature width; returns the scoring function."""
    if settings.fusion.model == "lambdarank":
        booster = fit_ranker(x, y, groups, seed)
        return lambda m: np.asarray(booster.predict(m, num_threads=1), dtype=np.float64)
    return FusionModel.fit(x, y, settings.fusion.regularization_c, seed=seed).logits


def write_probe_report(results: list[MethodResult], path: Path | None, md_path: Path | None, title: str) -> str:
    base = next(r for r in results if r.method == "fusion").metrics["ndcg@10"]
    als = next(r for r in results if r.method == "mf-als").metrics["ndcg@10"]
    lines = [f"### {title}", "", "| method | NDCG@10 | vs fusion | vs mf-als | HR@10 | Recall@20 | cost |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r.metrics
        cost = f"fit {r.extra['fit_s']:.1f} s, score p95 {r.extra['score_p95_ms']:.1f} ms" if "fit_s" in r.extra else ""
        lines.append(f"| {r.method} | {m['ndcg@10']:.4f} | {m['ndcg@10'] / base - 1:+.1%} | "
                     f"{m['ndcg@10'] / als:.3f}x | {m['hr@10']:.4f} | {m['recall@20']:.4f} | {cost} |")
    table = "\n".join(lines)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"method": r.method, **{k: round(v, 4) for k, v in r.metrics.items() if k != "users"},
                 "users": int(r.metrics["users"]), "split": "validation", "params": r.params, **r.extra}
                for r in results]
        path.write_text(json.dumps(rows, indent=2, default=str))
    if md_path:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(table + "\n")
    return table
