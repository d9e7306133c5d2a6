"""The benchmark commands of the `fusionrec` CLI, `eval` and `probe-sources`, registered as a plugin
(entry point group "fusionrec.commands" in pyproject.toml) so that the product never imports `evals`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.settings_args import settings_from_args

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _benchmark_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Settings, the named dataset and the cached embedder: what `eval` and `probe-sources` start from."""
    from loaders import load_dataset
    from vectorstore.embeddings import MiniLMEmbeddingFunction

    settings = settings_from_args(args)
    dataset = load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
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



def register(add: AddCommand) -> None:
    """Add `eval` and `probe-sources` with ``add(name, function, help)`` (which adds --data)."""
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
