"""Live-data benchmark: ``POST /v1/events`` ingest throughput and freshness (how soon the next recommendation
reflects an event) against the real app on 127.0.0.1 (LLM off, a private demo home, an operator key).

    python -m evals.bench_events [--home DIR] [--clients 20 --batch 100 --duration 15 --rounds 50]

Ingest: ``--clients`` threads, each with its own httpx client, post batches of ``--batch`` events (random
users, items and kinds, operator key) for ``--duration`` seconds; events/s counts the events acknowledged with
200. Baseline of the same run: ``GET /healthz`` with the same clients for the same time. Target >= 2,000
events/s on 2 cores.
Freshness: for each of ``--rounds`` users, the recommendation (structured, ``use_llm: false``), then a purchase
of its first item with the user's own key, then at once the same recommendation: the time from the event's
200 to that answer, and whether the item is gone (every round must reflect it). Baseline: the first
recommendation's latency. Target p95 <= 50 ms. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from evals.app_process import ROOT, AppProcess

OPERATOR = "op-bench-events"
KINDS = ("view", "view", "click", "purchase")


def pct(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "n": 0}
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2),
            "n": len(values)}


def hammer(url: str, clients: int, duration_s: float, send: Any) -> dict[str, Any]:
    """``send(client, rng) -> units`` repeatedly from ``clients`` threads for ``duration_s``."""
    done: list[int] = [0] * clients
    requests: list[int] = [0] * clients
    errors: list[int] = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + duration_s

    def worker(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    units = send(client, rng)
                except httpx.HTTPError:
                    units = None
                latencies[n].append((time.perf_counter() - t) * 1000)
                requests[n] += 1
                if units is None:
                    errors[n] += 1
                else:
                    done[n] += units

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - started
    return {"elapsed_s": round(elapsed, 2), "requests": sum(requests), "errors": sum(errors), "units": sum(done),
            "per_s": round(sum(done) / elapsed, 1), "requests_per_s": round(sum(requests) / elapsed, 1),
            "latency": pct([v for lat in latencies for v in lat])}


def ingest(url: str, users: list[str], items: list[str], clients: int, batch: int, duration_s: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {OPERATOR}"}

    def send(client: httpx.Client, rng: random.Random) -> int | None:
        events = [{"user_id": rng.choice(users), "item_id": rng.choice(items), "kind": rng.choice(KINDS)}
                  for _ in range(batch)]
        r = client.post("/v1/events", json={"events": events}, headers=headers)
        return int(r.json()["stored"]) if r.status_code == 200 else None

    return hammer(url, clients, duration_s, send)


def healthz(url: str, clients: int, duration_s: float) -> dict[str, Any]:
    def send(client: httpx.Client, rng: random.Random) -> int | None:
        return 1 if client.get("/healthz").status_code == 200 else None

    return hammer(url, clients, duration_s, send)


def freshness(url: str, keys: dict[str, str], rounds: int) -> dict[str, Any]:
    after_ms, before_ms, reflected, event_ms = [], [], 0, []
    with httpx.Client(base_url=url, timeout=60) as client:
        for key, user in list(keys.items())[:rounds]:
            headers = {"Authorization": f"Bearer {key}"}
            body = {"k": 10, "use_llm": False}
            t = time.perf_counter()
            first = client.post("/v1/recommend", json=body, headers=headers)
            before_ms.append((time.perf_counter() - t) * 1000)
            first.raise_for_status()
            bought = first.json()["items"][0]["item_id"]
            t = time.perf_counter()
            ev = client.post("/v1/events", headers=headers,
                             json={"events": [{"user_id": user, "item_id": bought, "kind": "purchase"}]})
            acked = time.perf_counter()
            event_ms.append((acked - t) * 1000)
            ev.raise_for_status()
            again = client.post("/v1/recommend", json=body, headers=headers)
            after_ms.append((time.perf_counter() - acked) * 1000)
            again.raise_for_status()
            reflected += bought not in [i["item_id"] for i in again.json()["items"]]
    return {"rounds": len(after_ms), "reflected": reflected, "event_to_recommendation": pct(after_ms),
            "event_post": pct(event_ms), "recommend_without_event": pct(before_ms)}


def private_home(source: str | None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="fusionrec-bench-events-"))
    if source:  # a copy of a built demo home: the benchmark's events never reach the original
        for name in ("index", "chroma"):
            shutil.copytree(Path(source) / name, home / name)
        if (Path(source) / "embeddings.sqlite").is_file():
            shutil.copy(Path(source) / "embeddings.sqlite", home / "embeddings.sqlite")
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench_events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="a built demo home to copy (default: build one in a temporary folder)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of ingest and of the baseline")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json", default=str(ROOT / "docs" / "benchmarks" / "events-demo.json"))
    args = parser.parse_args(argv)

    from loaders.demo import make_demo

    demo = make_demo(seed=7)
    users = demo.users["user_id"].astype(str).tolist()
    items = demo.catalog["item_id"].astype(str).tolist()
    keys = {f"sk-bench-{u}": u for u in users[: args.rounds]}
    env = {"FUSIONREC_LOG_LEVEL": "WARNING", "FUSIONREC_LLM__BACKEND": "off", "FUSIONREC_API__KEYS": json.dumps(keys),
           "FUSIONREC_API__OPERATOR_KEYS": json.dumps([OPERATOR]), "FUSIONREC_API__RATE_LIMIT_PER_MINUTE": "10000000"}
    home = private_home(args.home)
    print(f"starting the app on {home} ...", flush=True)
    app = AppProcess(home, env)
    try:
        # freshness first, on users no ingest event has touched yet; then the throughput phases
        fresh = freshness(app.url, keys, args.rounds)
        base = healthz(app.url, args.clients, args.duration)
        load = ingest(app.url, users, items, args.clients, args.batch, args.duration)
    finally:
        app.stop()
    out = {"clients": args.clients, "batch": args.batch, "duration_s": args.duration, "app_log": str(app.log),
           "ingest": load, "healthz": base,
           "ingest_requests_over_healthz": round(load["requests_per_s"] / max(base["requests_per_s"], 1e-9), 3),
           "freshness": fresh, "targets": {"ingest_events_per_s": 2000, "freshness_p95_ms": 50}}
    f = fresh["event_to_recommendation"]
    print(f"ingest: {load['per_s']:.0f} events/s ({load['requests_per_s']} batches/s of {args.batch}, "
          f"{args.clients} clients, {load['errors']} errors; batch p50 {load['latency']['p50_ms']} ms, "
          f"p95 {load['latency']['p95_ms']} ms)  target >= 2000")
    print(f"healthz baseline: {base['requests_per_s']} requests/s (p50 {base['latency']['p50_ms']} ms); "
          f"ingest batches / healthz requests = {out['ingest_requests_over_healthz']}")
    print(f"freshness: event 200 -> recommendation without the item p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms "
          f"(target p95 <= 50); reflected in {fresh['reflected']} of {fresh['rounds']} rounds")
    print(f"  recommend without a preceding event: p50 {fresh['recommend_without_event']['p50_ms']} ms, "
          f"p95 {fresh['recommend_without_event']['p95_ms']} ms; the event POST itself p50 "
          f"{fresh['event_post']['p50_ms']} ms")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
