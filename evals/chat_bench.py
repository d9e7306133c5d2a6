"""Turn latency and token use of scripted 3-turn conversations against the real app over HTTP.

    python -m evals.chat_bench --conversations 50 --json artifacts/chat-bench.json

Starts `python app.py` (default local model) on 127.0.0.1 with a private home, replays each conversation
twice — once with the model (``use_llm: true``) and once fusion-only (``use_llm: false``), interleaved so
that load on the machine hits both alike — and reports p50/p95 turn latency and tokens per turn.
The app runs as a real process (evals/app_process.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from evals.app_process import AppProcess

ROOT = Path(__file__).resolve().parent.parent
FIRST = ("camping gear under $100", "sci-fi books under $20", "board games for a party", "a yoga mat",
         "wireless headphones under $150", "kitchen things for baking", "a gift for a kid under $40",
         "running shoes", "cozy decor for a small flat", "something for my garden under $50")
REFINE = ("cheaper", "not the first one", "more like the second one", "something else", "more expensive")
LAST = ("why the first one?", "how much is the second one?", "tell me about the first one",
        "what did my friends buy", "history books", "anything under $30")


def conversations(n: int, seed: int = 7) -> list[tuple[str, list[str]]]:
    """(user id, three messages): a constrained request, a refinement, a question or another request."""
    rng = random.Random(seed)
    return [(f"u{(c * 37) % 300 + 1:04d}", [rng.choice(FIRST), rng.choice(REFINE), rng.choice(LAST)])
            for c in range(n)]


@dataclass
class Mode:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    llm_used: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, status: int, elapsed_ms: float, body: dict[str, Any]) -> None:
        if status != 200:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1
            return
        self.latencies_ms.append(elapsed_ms)
        self.server_ms.append(float(body.get("timings_ms", {}).get("total_ms", 0.0)))
        self.prompt_tokens.append(int(body.get("tokens", {}).get("prompt", 0)))
        self.completion_tokens.append(int(body.get("tokens", {}).get("completion", 0)))
        self.llm_used += bool(body.get("llm_used"))
        reason = body.get("fallback_reason")
        if reason:
            self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 1) if values else None

        turns = len(self.latencies_ms)
        return {"mode": self.name, "turns": turns, "errors": self.errors,
                "p50_ms": pct(self.latencies_ms, 50), "p95_ms": pct(self.latencies_ms, 95),
                "server_p50_ms": pct(self.server_ms, 50), "server_p95_ms": pct(self.server_ms, 95),
                "prompt_tokens_per_turn": round(sum(self.prompt_tokens) / turns, 1) if turns else 0.0,
                "completion_tokens_per_turn": round(sum(self.completion_tokens) / turns, 1) if turns else 0.0,
                "llm_used_share": round(self.llm_used / turns, 3) if turns else 0.0, "fallbacks": self.fallbacks}


def replay(url: str, key: str, user: str, messages: list[str], session: str, use_llm: bool, mode: Mode,
           timeout_s: float) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s) as client:
        for message in messages:
            started = time.perf_counter()
            try:
                r = client.post("/v1/recommend", json={"message": message, "session_id": session, "use_llm": use_llm})
                status, body = r.status_code, (r.json() if r.headers.get("content-type", "").startswith(
                    "application/json") else {})
            except httpx.HTTPError as exc:
                status, body = 0, {"error": exc.__class__.__name__}
            mode.add(status, (time.perf_counter() - started) * 1000, body)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | turns | errors | p50 ms | p95 ms | server p50 ms | server p95 ms | prompt tok/turn | "
             "completion tok/turn | LLM used | fallbacks |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['turns']} | {sum(r['errors'].values())} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['server_p50_ms']} | {r['server_p95_ms']} | {r['prompt_tokens_per_turn']} | "
                     f"{r['completion_tokens_per_turn']} | {r['llm_used_share']:.0%} | "
                     f"{', '.join(f'{k}: {v}' for k, v in sorted(r['fallbacks'].items())) or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.chat_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--home", help="state folder for the app (default: a new temporary folder)")
    parser.add_argument("--llm", default="local", choices=["local", "hosted"], help="backend of the LLM runs")
    parser.add_argument("--timeout", type=float, default=180.0, help="client timeout per turn, seconds")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    plan = conversations(args.conversations, args.seed)
    users = sorted({user for user, _ in plan})
    keys = {f"bench-{user}": user for user in users}
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="fusionrec-chat-bench-"))
    print(f"starting the app (LLM: {args.llm}) on {home} ...", flush=True)
    app = AppProcess(home, {"FUSIONREC_LOG_LEVEL": "WARNING", "FUSIONREC_LLM__BACKEND": args.llm, "FUSIONREC_API__KEYS": json.dumps(keys),
                            "FUSIONREC_API__RATE_LIMIT_PER_MINUTE": "100000"})
    llm_identity = httpx.get(app.url + "/readyz", timeout=10).json().get("llm")  # /healthz is liveness only
    modes = {True: Mode(f"llm ({llm_identity or 'unavailable'})"), False: Mode("llm off (fusion only)")}
    started = time.monotonic()
    try:
        for n, (user, messages) in enumerate(plan):
            for use_llm in (False, True):
                session = f"bench-{args.seed}-{n}-{'llm' if use_llm else 'off'}"
                replay(app.url, f"bench-{user}", user, messages, session, use_llm, modes[use_llm], args.timeout)
            print(f"  conversation {n + 1}/{len(plan)} done ({time.monotonic() - started:.0f}s)", flush=True)
    finally:
        app.stop()
    rows = [modes[False].summary(), modes[True].summary()]
    print(table(rows))
    if args.json:
        out = {"conversations": len(plan), "turns_per_conversation": 3, "llm": llm_identity,
               "seconds": round(time.monotonic() - started, 1), "results": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
