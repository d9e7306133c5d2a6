"""`fusionrec` subcommands: index, recommend, eval, probe-sources, prompts, serve. Wires flags to the settings object."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _settings(args: argparse.Namespace) -> Any:
    from cli.settings_args import settings_from_args

    return settings_from_args(args)


def cmd_index(args: argparse.Namespace) -> int:
    from agent.indexer import build_index

    settings = _settings(args)
    report = build_index(settings, progress=not args.quiet)
    print(f"index: {report.path}  vectors: {report.vectors}  refit: {'yes' if report.refit else 'no (up to date)'}"
          f"  {report.seconds:.1f}s")
    kind = report.fusion.info.get("model", "logistic")
    print("fusion: " + ("LambdaRank trees; share of split gain per feature:" if report.fusion.ranker is not None
                        else f"{kind}; weight per standard deviation of each feature:"))
    for name, weight in report.fusion.weight_table():
        print(f"  {name:24s} {weight:+.3f}")
    return 0


def _request_from(args: argparse.Namespace) -> Any:
    from agent.request import Constraints, RecommendRequest

    constraints = Constraints(category=args.category, price_min=args.min_price, price_max=args.max_price,
                              tags=list(args.tag or []))
    return RecommendRequest(user_id=args.user, k=args.k, query=args.query, constraints=constraints,
                            exclude_items=list(args.exclude or []))


def cmd_recommend(args: argparse.Namespace) -> int:
    from agent.indexer import load_recommender

    settings = _settings(args)
    recommender = load_recommender(settings)
    result = recommender.recommend(_request_from(args))
    if args.json:
        print(json.dumps({"user_id": result.user_id, "items": [r.to_dict() for r in result.items],
                          "notes": result.notes, "timings_ms": result.timings_ms}, indent=2, default=str))
        return 0
    for note in result.notes:
        print(f"note: {note}")
    for r in result.items:
        price = f"{settings_currency(recommender)}{r.price:.2f}" if r.price is not None else ""
        e = r.evidence
        why = []
        if e.friends_count:
            why.append(f"{e.friends_count} friend(s) bought it" + (f" ({', '.join(e.friends)})" if e.friends else ""))
        if e.similar_history:
            why.append("similar to " + ", ".join(e.similar_history[:2]))
        if e.bought_together:
            why.append("chosen with " + ", ".join(e.bought_together[:2]))
        if e.constraints_met:
            why.append("; ".join(e.constraints_met))
        print(f"{r.rank:2d}. {r.title} [{r.category}] {price}  score {r.score:+.3f}")
        if why:
            print(f"    why: {' | '.join(why)}")
    print(f"({result.timings_ms.get('total_ms', 0):.1f} ms)")
    return 0


def settings_currency(recommender: Any) -> str:
    return str(recommender.stores.dataset.currency or "")


def _benchmark_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Settings, the named dataset and the cached embedder: what `eval` and `probe-sources` start from."""
    from loaders import load_dataset
    from vectorstore.embeddings import MiniLMEmbeddingFunction

    settings = _settings(args)
    dataset = load_dataset(settings.data, settings.demo_seed)
    return settings, dataset, MiniLMEmbeddingFunction(cache_path=str(settings.home / "embeddings.sqlite"))


def cmd_eval(args: argparse.Namespace) -> int:
    from evals.offline import run_eval, write_reports

    settings, dataset, embedder = _benchmark_inputs(args)
    run = run_eval(dataset, settings, embedder, quick=args.quick, max_users=args.max_users,
                   ablation=args.ablation)
    results = run.results
    if args.llm and args.llm != "off":
        from evals.llm_eval import run_llm_eval

        results.append(run_llm_eval(run, settings.llm, settings.index_dir, users=args.llm_users, log=print))
    out = Path(args.out) if args.out else None
    table = write_reports(
        results,
        Path(args.json) if args.json else None,
        (out / "eval.md") if out else None,
        (out / "eval.png") if out else None,
        f"{dataset.name}: full ranking, {results[0].metrics.get('users', 0):.0f} test users",
    )
    print(table)
    return 0


def cmd_probe_sources(args: argparse.Namespace) -> int:
    from evals.source_probe import run_probe, write_probe_report

    settings, dataset, embedder = _benchmark_inputs(args)
    tuned = None
    if args.sources_from:
        rows = json.loads(Path(args.sources_from).read_text())
        fusion = next((r for r in rows if r.get("method") == "fusion"), None)
        if fusion is None or "sources" not in fusion.get("params", {}):
            print(f"error: {args.sources_from} has no fusion row with tuned source settings "
                  "(write one with `fusionrec eval --json`)", file=sys.stderr)
            return 2
        tuned = fusion["params"]["sources"]
    results = run_probe(dataset, settings, embedder, quick=args.quick, max_users=args.max_users,
                        tuned_sources=tuned)
    users = int(results[0].metrics.get("users", 0))
    print(write_probe_report(results, Path(args.json) if args.json else None,
                             Path(args.out) / "probe.md" if args.out else None,
                             f"{dataset.name}: extra sources, VALIDATION split, {users} users"))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import app

    settings = _settings(args)
    if args.port:
        settings = settings.model_copy(update={"port": args.port})
    app.serve(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusionrec", description=__doc__)
    parser.add_argument("--home", help="state folder (index, Chroma, sessions); default .fusionrec/")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--data", help="'demo' (default), a Last.fm HetRec folder, or a generic-format folder")
        p.set_defaults(func=func)
        return p

    p = add("index", cmd_index, "build or update the vector store, sources and fusion weights")
    p.add_argument("--quiet", action="store_true")

    p = add("recommend", cmd_recommend, "ranked items with per-item evidence")
    p.add_argument("--user", required=True)
    p.add_argument("--query")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--category")
    p.add_argument("--min-price", type=float)
    p.add_argument("--max-price", type=float)
    p.add_argument("--tag", action="append")
    p.add_argument("--exclude", action="append", help="item id to leave out (repeatable)")
    p.add_argument("--json", action="store_true")

    p = add("eval", cmd_eval, "offline benchmark: full ranking, tuned baselines vs fusion")
    p.add_argument("--json", help="write one row per method to this file")
    p.add_argument("--out", help="folder for the markdown table and the PNG chart")
    p.add_argument("--quick", action="store_true", help="small hyper-parameter grids (for smoke tests)")
    p.add_argument("--max-users", type=int, help="evaluate on a seeded sample of test users")
    p.add_argument("--llm", choices=["off", "local", "hosted"], help="also evaluate fusion+LLM rerank")
    p.add_argument("--llm-users", type=int, default=200, help="users for the LLM rows (the LLM is slow)")
    p.add_argument("--ablation", action="store_true",
                   help="also retrain the fusion without each source's evidence (one row per source)")

    p = add("probe-sources", cmd_probe_sources,
            "validation-only: would an extra source (user-kNN, RP3beta, EASE, user tags) improve the fusion?")
    p.add_argument("--sources-from", help="an `fusionrec eval --json` file: reuse its tuned source settings")
    p.add_argument("--json", help="write one row per method to this file")
    p.add_argument("--out", help="folder for the markdown table (probe.md)")
    p.add_argument("--quick", action="store_true", help="small grids (for smoke tests)")
    p.add_argument("--max-users", type=int, help="score a seeded sample of validation users")

    from evals.prompt_lab.cli import add_prompts_parser

    add_prompts_parser(sub)

    p = add("serve", cmd_serve, "run the app (Gradio UI + API) on 127.0.0.1")
    p.add_argument("--port", type=int)

    args = parser.parse_args(argv)
    from loaders.schema import DataFormatError, UnknownItem, UnknownUser

    try:
        return int(args.func(args))
    except (DataFormatError, UnknownUser, UnknownItem) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if exc.__class__.__name__ == "IndexMissing":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
