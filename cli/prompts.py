"""`fusionrec prompts run|compare|generate`: the prompt lab on the command line.

Wired into cli/main.py with ``add_prompts_parser(sub)``; the global ``--home`` flag is read from the
parent parser's namespace.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.settings_args import settings_from_args
from config.settings import PROJECT_ROOT
from promptlab.cases import STARTER_CASES

DEFAULT_CASES = STARTER_CASES
DEFAULT_OUT = PROJECT_ROOT / "artifacts" / "prompt-lab"


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Lab errors end as one line on stderr and exit code 2, like the CLI's other errors."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from agent.prompts import PromptError
        from promptlab.cases import CaseFormatError
        from promptlab.runner import LabError
        from promptlab.variants import VariantError

        try:
            return func(args)
        except (CaseFormatError, LabError, VariantError, PromptError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _progress(args: argparse.Namespace) -> Any:
    return None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def _write(path: str | Path | None, text: str) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@guarded
def cmd_run(args: argparse.Namespace) -> int:
    from promptlab.cases import load_cases
    from promptlab.report import html_report, markdown
    from promptlab.runner import Lab
    from promptlab.variants import Variant

    cases = load_cases(args.cases, args.only)
    settings = settings_from_args(args, args.backend)
    prompt_set = args.prompt_set or settings.prompt_set
    variant = Variant(f"{prompt_set}@{settings.llm.backend}", prompt_set, settings.llm.backend)
    run = Lab(settings).run(cases, variant, _progress(args), replay_with_llm=not args.replay_fusion_only)
    text = markdown([run], f"Prompt lab run: {len(cases)} cases from {args.cases}")
    print(text)
    _write(args.json, json.dumps(run.to_dict(), indent=1, default=str))
    _write(args.md, text + "\n")
    _write(args.html, html_report([run], f"Prompt lab run: {variant.label}"))
    return 0 if all(c.ok or c.known_bug for c in run.cases) else 1


@guarded
def cmd_compare(args: argparse.Namespace) -> int:
    from promptlab.cases import load_cases
    from promptlab.report import html_report, markdown
    from promptlab.runner import Lab
    from promptlab.variants import parse_variant

    variants = [parse_variant(v) for v in args.variants]
    cases = load_cases(args.cases, args.only)
    lab = Lab(settings_from_args(args, args.backend))
    runs = lab.compare(cases, variants, _progress(args), replay_with_llm=not args.replay_fusion_only)
    title = f"Prompt lab: {' vs '.join(v.label for v in variants)} on {len(cases)} cases"
    text = markdown(runs, title)
    print(text)
    out = Path(args.out)
    _write(out / "compare.md", text + "\n")
    _write(out / "compare.html", html_report(runs, title))
    _write(args.json or out / "compare.json", json.dumps([r.to_dict() for r in runs], indent=1, default=str))
    print(f"\nwrote {out / 'compare.md'} and {out / 'compare.html'}", file=sys.stderr)
    return 0


@guarded
def cmd_generate(args: argparse.Namespace) -> int:
    from loaders import load_dataset
    from promptlab.cases import write_cases
    from promptlab.generate import generate_cases

    settings = settings_from_args(args)
    dataset = load_dataset(settings.data, settings.demo_seed, settings.rating_threshold)
    cases = generate_cases(dataset, args.n, args.seed, args.fraction, args.message, data=settings.data,
                           k=args.k, demo_seed=settings.demo_seed if settings.data == "demo" else None)
    path = write_cases(cases, Path(args.out))
    print(f"wrote {len(cases)} held-out cases to {path} (split seed {args.seed}, fraction {args.fraction:g}); "
          f"run them with --data {settings.data}: the runner builds an index without the held-out pairs")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="'demo' (default), a Last.fm HetRec folder, or a generic-format folder")
    p.add_argument("--cases", default=str(DEFAULT_CASES), help="a folder of YAML cases (or one file)")
    p.add_argument("--only", action="append", help="keep cases whose id or labels contain this (repeatable)")
    p.add_argument("--blend-weight", type=float, help="LLM weight in the final blend (default: the calibrated one)")
    p.add_argument("--quiet", action="store_true", help="no per-case progress on stderr")
    p.add_argument("--replay-fusion-only", action="store_true",
                   help="replay earlier messages without the LLM (faster; only each case's own message is checked)")


def add_prompts_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `prompts run`, `prompts compare` and `prompts generate` on the CLI's subparsers."""
    parser = subparsers.add_parser("prompts", help="prompt lab: run case suites, compare prompt variants")
    sub = parser.add_subparsers(dest="prompts_command", required=True)

    p = sub.add_parser("run", help="run every case through the real agent with one prompt set")
    _common(p)
    p.add_argument("--prompt-set", help="a folder under prompts/ (default: the configured set)")
    p.add_argument("--backend", choices=["local", "hosted", "off"], help="LLM backend (default: configured)")
    p.add_argument("--json", help="write every response, fused context, raw LLM output and check here")
    p.add_argument("--md", help="also write the markdown summary here")
    p.add_argument("--html", help="also write the HTML summary here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="run the same cases with several variants, side by side")
    _common(p)
    p.add_argument("--variants", nargs="+", required=True,
                   help="NAME, NAME@off|local|hosted, NAME@hosted:MODEL or NAME@/path/model.gguf")
    p.add_argument("--backend", choices=["local", "hosted", "off"], help="backend of variants without '@'")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for compare.md, compare.html, compare.json")
    p.add_argument("--json", help="write the full runs here instead of OUT/compare.json")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("generate", help="write cases from held-out behaviour of the configured data")
    p.add_argument("--data", help="'demo' (default), a Last.fm HetRec folder, or a generic-format folder")
    p.add_argument("--n", type=int, default=50, help="number of cases (one per sampled user)")
    p.add_argument("--seed", type=int, default=7, help="seed of the holdout split and the sampling")
    p.add_argument("--fraction", type=float, default=0.2, help="share of each user's positive items held out")
    p.add_argument("--message", default="What would you recommend for me?",
                   help="the shopper's message; may use {category} (the target's category)")
    p.add_argument("--k", type=int, help="picks per answer (default: the agent's default)")
    p.add_argument("--out", required=True, help="YAML file to write")
    p.set_defaults(func=cmd_generate)
    return parser
