"""`fusionrec eval`: the offline benchmark on real data, full ranking, every method tuned the same way.

Protocol (seeded, see agent/training.py for the holdout rule):
1. TEST split: hold out 20% of each eligible user's positive items; all their events are removed.
2. VALIDATION split: the same rule applied again to what is left (another seed).
3. Every baseline's grid is scored on VALIDATION with models fit on TRAIN; the best setting wins.
   The fusion model is trained on VALIDATION labels with sources fit on TRAIN (using the tuned
   source settings).
4. Everything is refit on TRAIN+VALIDATION and scored once on TEST: ranking over every item the
   user has not interacted with, no sampled negatives, ties broken by item index for every method.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from catalog.stores import Stores, build_stores
from config.settings import Settings
from evals.ablation import SOURCE_FEATURES, fusion_without
from evals.baselines import Baseline, baseline_grids
from evals.metrics import RankingMetrics, top_items
from fusion.model import FusionModel
from fusion.recommender import Recommender
from fusion.request import RecommendRequest
from indexing.training import Split, fold_rows, fusion_folds, holdout, select_served
from loaders.schema import Dataset
from retrieval.bundle import SourceModels
from retrieval.registry import REGISTRY
from vectorstore.embeddings import MiniLMEmbeddingFunction

Log = Callable[[str], None]


@dataclass
class MethodResult:
    method: str
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    validation_ndcg: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "method": self.method,
            "hr@10": round(self.metrics["hr@10"], 4),
            "ndcg@10": round(self.metrics["ndcg@10"], 4),
            "recall@20": round(self.metrics["recall@20"], 4),
            "coverage": round(self.metrics["coverage"], 4),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "users": int(self.metrics.get("users", 0)),
            "validation_ndcg@10": None if self.validation_ndcg is None else round(self.validation_ndcg, 4),
            "params": self.params,
            **self.extra,
        }


@dataclass
class EvalContext:
    dataset: Dataset
    train: Stores
    validation: pd.DataFrame
    train_full: Stores
    test: pd.DataFrame
    embed: Callable[[Stores], np.ndarray]
    train_dataset: Dataset
    train_full_dataset: Dataset


def relevant_sets(stores: Stores, held: pd.DataFrame, max_users: int | None, seed: int) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for user_id, items in held.groupby("user_id", observed=True)["item_id"]:
        if user_id in stores.user_index:
            out[stores.user_index[str(user_id)]] = {stores.item_index[i] for i in items if i in stores.item_index}
    users = sorted(out)
    if max_users and len(users) > max_users:
        keep = set(np.random.default_rng(seed).choice(users, max_users, replace=False).tolist())
        out = {u: out[u] for u in users if u in keep}
    return out


def score_method(method: Baseline, stores: Stores, relevant: dict[int, set[int]],
                 timings: list[float] | None = None) -> dict[str, float]:
    metrics = RankingMetrics()
    for user, items in relevant.items():
        t = time.perf_counter()
        ranked = top_items(method.score(user), stores.feedback[user].indices, 20)
        if timings is not None:
            timings.append((time.perf_counter() - t) * 1000)
        metrics.add(ranked, items)
    return metrics.summary(stores.n_items)


def prepare(dataset: Dataset, settings: Settings, embedder: MiniLMEmbeddingFunction, log: Log) -> EvalContext:
    seed = settings.sources.seed
    test_split = holdout(dataset, 0.2, seed)
    val_split = holdout(test_split.train, settings.fusion.validation_fraction, seed + 1)
    log(f"split: {len(test_split.held)} test pairs, {len(val_split.held)} validation pairs, "
        f"{test_split.held['user_id'].nunique()} users")
    train, train_full = build_stores(val_split.train), build_stores(test_split.train)

    def embed(stores: Stores) -> np.ndarray:
        return embedder.embed([stores.item_text(i) for i in range(stores.n_items)], progress=False)

    return EvalContext(dataset, train, val_split.held, train_full, test_split.held, embed, val_split.train,
                       test_split.train)


MAX_EDGE_STEPS = 3  # per method: how many times a grid is extended past an edge the best setting sits on


def beyond_edges(tried: list[dict[str, Any]], best: dict[str, Any]) -> list[dict[str, Any]]:
    """One step past the grid's edge along every numeric axis whose best value is that axis's end (the
    line through ``best``, other settings fixed): the step is the ratio of the last two values (the
    difference when the inner one is 0), floats kept to 3 significant digits; nothing below 0, nothing
    already tried."""
    out = []
    for key, value in best.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        line = sorted({p[key] for p in tried if key in p and all(p.get(k) == v for k, v in best.items() if k != key)})
        if len(line) < 2 or value not in (line[0], line[-1]):
            continue
        inner, edge = (line[-2], line[-1]) if value == line[-1] else (line[1], line[0])
        if edge <= 0:
            continue  # 0 is a lower bound (no shrinkage, no back-off)
        beyond = edge * edge / inner if inner > 0 else edge + (edge - inner)
        beyond = int(round(beyond)) if isinstance(value, int) else float(f"{beyond:.3g}")  # readable settings
        candidate = {**best, key: beyond}
        if beyond > 0 and beyond != edge and candidate not in tried:
            out.append(candidate)
    return out


def tune_baselines(ctx: EvalContext, quick: bool, max_users: int | None, seed: int, log: Log,
                   grids: Mapping[str, tuple[type[Baseline], list[dict[str, Any]]]] | None = None
                   ) -> dict[str, tuple[type[Baseline], dict[str, Any], float]]:
    """Each method's best setting on VALIDATION (models fit on TRAIN); ``grids`` defaults to the baselines'.
    When the best setting sits at an edge of its grid, the grid is extended in that direction and the
    method retuned (at most MAX_EDGE_STEPS times), the same for every method."""
    emb = ctx.embed(ctx.train)
    relevant = relevant_sets(ctx.train, ctx.validation, max_users, seed)
    best: dict[str, tuple[type[Baseline], dict[str, Any], float]] = {}
    for name, (cls, grid) in (baseline_grids(quick) if grids is None else grids).items():
        tried: list[dict[str, Any]] = []
        todo, extended = [dict(p) for p in grid], []
        for step in range(MAX_EDGE_STEPS + 1):
            for params in todo:
                tried.append(params)
                result = score_method(cls(name, dict(params)).fit(ctx.train, emb), ctx.train, relevant)
                if name not in best or result["ndcg@10"] > best[name][2]:
                    best[name] = (cls, dict(params), result["ndcg@10"])
            todo = beyond_edges(tried, best[name][1]) if step < MAX_EDGE_STEPS else []
            if not todo:
                break
            extended += [{k: v for k, v in p.items() if p[k] != best[name][1][k]} for p in todo]
        note = f"; grid extended past its edge: {extended}" if extended else ""
        log(f"tuned {name}: {best[name][1]} validation NDCG@10 {best[name][2]:.4f} ({len(tried)} settings{note})")
    return best


def source_settings_from(settings: Settings, best: dict[str, tuple[type[Baseline], dict[str, Any], float]]) -> Settings:
    """The fusion uses each source with the hyper-parameters its own baseline was tuned to."""
    knn, mf, social = best["item-knn"][1], best["mf-als"][1], best["social"][1]
    sources = settings.sources.model_copy(update={
        "knn_neighbours": knn["neighbours"], "knn_shrink": knn["shrink"],
        "mf_factors": mf["factors"], "mf_regularization": mf["regularization"], "mf_alpha": mf["alpha"],
        "mf_weighting": mf.get("weighting", "log"),
        "social_similarity_weighted": social["weighted"],
        **{k: v for entry in REGISTRY if entry.name in best for k, v in best[entry.name][1].items()},
    })
    return settings.model_copy(update={"sources": sources})


@dataclass
class EvalRun:
    """Everything an offline run produced, reused by the LLM evaluation of the same run."""

    ctx: EvalContext
    settings: Settings  # with the tuned source hyper-parameters
    fusion: FusionModel  # the learned fusion (what the LLM evaluation reranks)
    results: list[MethodResult]
    served: FusionModel | None = None  # the same model serving the ranker chosen on validation


def run_eval(dataset: Dataset, settings: Settings, embedder: MiniLMEmbeddingFunction, quick: bool = False,
             max_users: int | None = None, log: Log = print, ablation: bool = False) -> EvalRun:
    seed = settings.sources.seed
    started = time.perf_counter()
    ctx = prepare(dataset, settings, embedder, log)
    best = tune_baselines(ctx, quick, max_users, seed, log)
    tuned = source_settings_from(settings, best)

    # Fusion: weights learned on VALIDATION labels (fold 0, sources fit on TRAIN) and on extra holdout
    # folds of TRAIN+VALIDATION; the TEST items are in none of them.
    folds = fusion_folds(ctx.train_full_dataset, tuned.fusion.validation_fraction, seed + 1, tuned.fusion.folds,
                         first=Split(ctx.train_dataset, ctx.validation))
    rows = fold_rows(folds, tuned, ctx.embed, lambda split: ctx.train if split.train is ctx.train_dataset
                     else build_stores(split.train))
    x, y, groups = rows.x, rows.y, rows.groups
    fusion = FusionModel.fit(x, y, tuned.fusion.regularization_c, info={"folds": len(folds)},
                             model=tuned.fusion.model, groups=groups, seed=seed)
    log(f"fusion ({tuned.fusion.model}) weights: " + ", ".join(f"{f} {w:+.3f}" for f, w in fusion.weight_table()[:8]))
    # The served ranker, chosen as `fusionrec index` chooses it: on VALIDATION users the learner never saw.
    selection = select_served(rows, tuned)
    for line in selection.lines():
        log(line)
    served_model = fusion.serving(selection.served, selection.to_json())

    # Final: everything refit on TRAIN+VALIDATION, scored on TEST.
    emb_full = ctx.embed(ctx.train_full)
    relevant = relevant_sets(ctx.train_full, ctx.test, max_users, seed)
    results: list[MethodResult] = []
    for name, (cls, params, val_ndcg) in best.items():
        timings: list[float] = []
        method = cls(name, params).fit(ctx.train_full, emb_full)
        metrics = score_method(method, ctx.train_full, relevant, timings)
        results.append(MethodResult(name, metrics, params, val_ndcg, timings))
        log(f"test {name}: NDCG@10 {metrics['ndcg@10']:.4f}")
    models_full = SourceModels.fit(ctx.train_full, tuned.sources, emb_full)
    recommender = Recommender(ctx.train_full, models_full, fusion, tuned)
    fusion_result = evaluate_recommender(recommender, relevant)
    fusion_result.params = {"sources": {k: v for k, v in tuned.sources.model_dump().items()
                                        if k.startswith(("knn", "mf", "social", "per_source", "ease", "rp3"))},
                            "weights": dict(fusion.weight_table())}
    results.append(fusion_result)
    log(f"test fusion: NDCG@10 {fusion_result.metrics['ndcg@10']:.4f}  ({time.perf_counter() - started:.0f}s total)")
    if selection.served == "fusion":
        served = MethodResult("served: fusion", fusion_result.metrics, latencies_ms=fusion_result.latencies_ms)
    else:
        served = evaluate_recommender(Recommender(ctx.train_full, models_full, served_model, tuned), relevant,
                                      method=f"served: {selection.served}")
    served.extra = {"served": selection.served, "selection": selection.to_json()}
    results.append(served)
    log(f"test served ({selection.served}): NDCG@10 {served.metrics['ndcg@10']:.4f}")
    if ablation:
        # Leave one source's evidence out: same rows, same learner, same TEST users (evals/ablation.py).
        for source in SOURCE_FEATURES:
            without = fusion_without(source, x, y, groups, fusion, seed)
            row = evaluate_recommender(Recommender(ctx.train_full, models_full, without, tuned), relevant,
                                       method=f"fusion-no-{source}")
            row.extra = {"without": source}
            results.append(row)
            log(f"test fusion without {source}: NDCG@10 {row.metrics['ndcg@10']:.4f}")
    return EvalRun(ctx, tuned, fusion, results, served_model)


def evaluate_recommender(recommender: Recommender, relevant: dict[int, set[int]], method: str = "fusion",
                         k: int = 20) -> MethodResult:
    stores = recommender.stores
    metrics = RankingMetrics()
    timings = []
    for user, items in relevant.items():
        request = RecommendRequest(user_id=str(stores.user_ids[user]), k=k, exclude_seen="all")
        t = time.perf_counter()
        result = recommender.recommend(request)
        timings.append((time.perf_counter() - t) * 1000)
        ranked = np.array([stores.item_index[r.item_id] for r in result.items])
        metrics.add(ranked, items)
    return MethodResult(method, metrics.summary(stores.n_items), latencies_ms=timings)


def write_reports(results: list[MethodResult], json_path: Path | None, md_path: Path | None, png_path: Path | None,
                  title: str) -> str:
    rows = [r.row() for r in results]
    baselines = [r for r in rows if not str(r["method"]).startswith(("fusion", "served"))]
    best = max(baselines, key=lambda r: r["ndcg@10"]) if baselines else None
    lines = [f"### {title}", "", "| method | HR@10 | NDCG@10 | Recall@20 | coverage | p50 ms | p95 ms |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = str(r["method"])
        if best is not None and r is best:
            name += " (best single)"
        if name.startswith("served"):
            name = f"**{name}**"
        lines.append(f"| {name} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['recall@20']:.4f} | "
                     f"{r['coverage']:.3f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |")
    fusion = next((r for r in rows if r["method"] == "fusion"), None)
    served = next((r for r in rows if str(r["method"]).startswith("served")), None)
    if fusion and best and best["ndcg@10"] > 0:
        lines += ["", f"fusion NDCG@10 / best single baseline ({best['method']}) = "
                      f"{fusion['ndcg@10'] / best['ndcg@10']:.3f}x"]
    if served and best and best["ndcg@10"] > 0:
        lines += [f"served ({served['served']}) NDCG@10 / best single baseline ({best['method']}) = "
                  f"{served['ndcg@10'] / best['ndcg@10']:.3f}x",
                  f"served ranker chosen on validation: {served['selection']['reason']}"]
    table = "\n".join(lines)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=2, default=str))
    if md_path:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(table + "\n")
    if png_path:
        plot(rows, png_path, title)
    return table


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["hr@10", "ndcg@10", "recall@20"]
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(rows)
    tab20 = list(plt.get_cmap("tab20")(np.arange(20)))
    colors = tab20[::2] + tab20[1::2]  # ten distinct hues, then their light shades
    for k, row in enumerate(rows):
        ablated = str(row["method"]).startswith("fusion-no-")  # ablation rows: hatched, so colours stay distinct
        ax.bar(np.arange(len(metrics)) + k * width, [row[m] for m in metrics], width, label=row["method"],
               color=colors[k % len(colors)], hatch="//" if ablated else None, edgecolor="white" if ablated else None)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(rows) - 1) / 2, metrics)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
