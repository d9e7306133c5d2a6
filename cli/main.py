"""`fusionrec` subcommands: index, recommend, eval, probe-sources, prompts, serve. Wires flags to the settings object."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _settings(args: argparse.Namespace) -> Any:
    from cli.settings_args import settings_from_args

    return settings_from_args(args)


def _event_store(settings: Any) -> Any:
    from storage.events import EventStore

    return EventStore(settings.home / "sessions" / f"{settings.dataset_key}.sqlite")


def cmd_index(args: argparse.Namespace) -> int:
    from indexing.build import build_index, refresh_index

    settings = _settings(args)
    if args.refresh:
        events = _event_store(settings)
        report = refresh_index(settings, events, progress=not args.quiet)
        print(f"refresh: folded {events.last_seq()} stored events into the data; swapped the index in atomically")
    else:
        report = build_index(settings, progress=not args.quiet)
    print(f"index: {report.path}  vectors: {report.vectors}  refit: {'yes' if report.refit else 'no (up to date)'}"
          f"  {report.seconds:.1f}s")
    kind = report.fusion.info.get("model", "logistic")
    print("fusion: " + ("LambdaRank trees; share of split gain per feature:" if report.fusion.ranker is not None
                        else f"{kind}; weight per standard deviation of each feature:"))
    for name, weight in report.fusion.weight_table():
        print(f"  {name:24s} {weight:+.3f}")
    selection = report.fusion.selection
    if selection:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted(selection["validation"].items(), key=lambda t: -t[1]))
        print(f"served ranker: {report.fusion.served} ({selection['reason']})")
        if figures:
            print(f"  validation NDCG@10 on {selection['users']} users no learner saw: {figures}")
    else:
        print(f"served ranker: {report.fusion.served} (no validation users to choose on)")
    print(f"flagged: {len(report.flagged)} items whose text holds instruction-like sentences (kept out of the "
          "embedded text and prompts, quoted as flagged data in answers)")
    for item_id, title in report.flagged:
        print(f"  {item_id}  {title!r}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from pathlib import Path

    settings = _settings(args)
    frame = _event_store(settings).interactions()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    print(f"events: wrote {len(frame)} events to {out}")
    return 0


def _request_from(args: argparse.Namespace) -> Any:
    from catalog.constraints import Constraints
    from fusion.request import RecommendRequest

    constraints = Constraints(category=args.category, price_min=args.min_price, price_max=args.max_price,
                              tags=list(args.tag or []))
    return RecommendRequest(user_id=args.user, k=args.k, query=args.query, constraints=constraints,
                            exclude_items=list(args.exclude or []))


def cmd_recommend(args: argparse.Namespace) -> int:
    from agent.evidence import reasons
    from indexing.build import load_recommender
    from storage.catalog_edits import CatalogEditStore

    settings = _settings(args)
    database = settings.home / "sessions" / f"{settings.dataset_key}.sqlite"
    live = {"events": _event_store(settings), "edits": CatalogEditStore(database)} if database.is_file() else {}
    recommender = load_recommender(settings, **live)  # the same catalog and live events as the app
    result = recommender.recommend(_request_from(args))
    if args.json:
        print(json.dumps({"user_id": result.user_id, "items": [r.model_dump() for r in result.items],
                          "notes": result.notes, "timings_ms": result.timings_ms}, indent=2, default=str))
        return 0
    for note in result.notes:
        print(f"note: {note}")
    for r in result.items:
        price = f"{settings_currency(recommender)}{r.price:.2f}" if r.price is not None else ""
        why = reasons(r, fallback=False)
        print(f"{r.rank:2d}. {r.title} [{r.category}] {price}  score {r.score or 0:+.3f}")
        if why:
            print(f"    why: {' | '.join(why)}")
    print(f"({result.timings_ms.get('total_ms', 0):.1f} ms)")
    return 0


def settings_currency(recommender: Any) -> str:
    return str(recommender.stores.dataset.currency or "")


def cmd_serve(args: argparse.Namespace) -> int:
    import app

    settings = _settings(args).with_overrides(port=args.port, workers=args.workers)
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
    p.add_argument("--refresh", action="store_true",
                   help="fold the stored live events into the data and refit (safe while the app serves; for cron)")

    p = add("events", cmd_events, "live behaviour events stored by POST /v1/events")
    p.add_argument("action", choices=["export"])
    p.add_argument("--out", required=True, help="file to write (.csv or .parquet): the generic interactions format")

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

    # Benchmark commands (`eval`, `probe-sources`) are plugins: the `evals` package registers them through
    # the "fusionrec.commands" entry points, so the product never imports the benchmarks.
    for entry in entry_points(group="fusionrec.commands"):
        entry.load()(add)

    from cli.prompts import add_prompts_parser

    add_prompts_parser(sub)

    p = add("serve", cmd_serve, "run the app (Gradio UI + API) on 127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="API worker processes (default 1: one process serving the UI and "
                                               "the APIs; 0 = one per core; above 1 the UI runs in one more process)")

    args = parser.parse_args(argv)
    from loaders.schema import DataFormatError, UnknownItem, UnknownUser
    from storage.sessions import SessionDatabaseError

    try:
        return int(args.func(args))
    except (DataFormatError, UnknownUser, UnknownItem, SessionDatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if exc.__class__.__name__ == "IndexMissing":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
