"""Load benchmark: mixed POST /v1/recommend and POST /v1/chat/completions traffic from locust virtual users
(each keeps its own session) against the real app on 127.0.0.1, first with the LLM off, then with the local model.

    python -m evals.load_bench --json artifacts/load-bench.json [--users 20 --duration 60 --llm-users 5]

Reports throughput, p50/p95/p99 latency, status counts (target: no 5xx) and lost turns: turns the server
acknowledged with 200 whose row is missing from the sessions SQLite (target: zero). A benchmark, not a test.
"""

from __future__ import annotations

from gevent import monkey  # isort: skip

monkey.patch_all()  # locust runs on gevent: patch before anything imports socket or ssl

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from contextlib import closing  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from itertools import count  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import numpy as np  # noqa: E402
from locust import HttpUser, between, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import StopUser  # noqa: E402

from evals.app_process import AppProcess  # noqa: E402
from evals.chat_bench import FIRST, LAST, REFINE  # noqa: E402

TURNS_PER_SESSION = 6


@dataclass
class Phase:
    """What one run of the scenario observed (filled by the request listener and the virtual users)."""

    name: str
    users: int
    duration_s: float
    prefix: str  # of every session id this phase uses
    latencies_ms: list[float] = field(default_factory=list)
    by_endpoint: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    acknowledged: set[tuple[str, str]] = field(default_factory=set)  # (session id, request id) answered with 200
    elapsed_s: float = 0.0  # including the drain of requests in flight at the end
    stopping: bool = False
    fallbacks: dict[str, int] = field(default_factory=dict)  # why turns were ranked without the model

    def answered(self, session_id: str, request_id: str, fallback: str | None) -> None:
        self.acknowledged.add((session_id, request_id))
        key = fallback or "none"
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def on_request(self, request_type: str, name: str, response_time: float, response: Any = None,
                   exception: Any = None, **_: Any) -> None:
        status = getattr(response, "status_code", 0) or 0
        key = str(status) if status else f"transport:{exception.__class__.__name__ if exception else 'error'}"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.latencies_ms.append(float(response_time))
        self.by_endpoint.setdefault(name, []).append(float(response_time))


def shopper_class(phase: Phase, keys: list[str], host: str, timeout_s: float) -> type[HttpUser]:
    """A locust user class bound to this phase: key i of the list for virtual user i, its own sessions."""
    numbers = count()

    class Shopper(HttpUser):
        wait_time = between(0.2, 1.0)

        def on_start(self) -> None:
            n = next(numbers)
            self.key = keys[n % len(keys)]
            self.prefix = f"{phase.prefix}{n}"
            self.conversation, self.turn = 0, 0
            self.rng = random.Random(n)

        def _message(self) -> str:
            """The next message of this user's conversation; a new session every few turns."""
            if self.turn >= TURNS_PER_SESSION:
                self.conversation, self.turn = self.conversation + 1, 0
            self.turn += 1
            return self.rng.choice(FIRST if self.turn == 1 else REFINE if self.turn % 2 == 0 else LAST + FIRST)

        def _session(self) -> str:
            return f"{self.prefix}-{self.conversation}"

        @task(3)
        def recommend(self) -> None:
            if phase.stopping:
                raise StopUser()
            message = self._message()
            with self.client.post("/v1/recommend", name="/v1/recommend", timeout=timeout_s, catch_response=True,
                                  headers={"Authorization": f"Bearer {self.key}"},
                                  json={"message": message, "session_id": self._session()}) as r:
                if r.status_code == 200:
                    body = r.json()
                    phase.answered(body["session_id"], body["request_id"], body["fallback_reason"])
                    r.success()
                else:
                    r.failure(f"HTTP {r.status_code}")

        @task(1)
        def chat(self) -> None:
            if phase.stopping:
                raise StopUser()
            message = self._message()
            with self.client.post("/v1/chat/completions", name="/v1/chat/completions", timeout=timeout_s,
                                  catch_response=True, json={"model": "fusionrec", "messages": [
                                      {"role": "user", "content": message}]},
                                  headers={"Authorization": f"Bearer {self.key}", "X-Session-Id": self._session()}) as r:
                if r.status_code == 200:
                    body = r.json()
                    extra = body["fusionrec"]
                    phase.answered(extra["session_id"], body["id"].removeprefix("chatcmpl-"), extra["fallback_reason"])
                    r.success()
                else:
                    r.failure(f"HTTP {r.status_code}")

    Shopper.host = host
    return Shopper


def run_phase(phase: Phase, app: AppProcess, keys: list[str], timeout_s: float) -> None:
    env = Environment(user_classes=[shopper_class(phase, keys, app.url, timeout_s)])
    env.events.request.add_listener(phase.on_request)
    runner = env.create_local_runner()
    started = time.monotonic()
    runner.start(phase.users, spawn_rate=phase.users)
    gevent.sleep(phase.duration_s)
    phase.stopping = True  # no new requests; the ones in flight finish, so every turn sent gets its answer
    drain_until = time.monotonic() + timeout_s
    while runner.user_count and time.monotonic() < drain_until:
        gevent.sleep(0.2)
    phase.elapsed_s = time.monotonic() - started
    runner.quit()


def stored_turns(db: Path, prefix: str) -> set[tuple[str, str]]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT session_id, response FROM turns WHERE substr(session_id, 1, ?) = ?",
                            (len(prefix), prefix)).fetchall()
    return {(session, str(json.loads(response).get("request_id"))) for session, response in rows}


def summary(phase: Phase, stored: set[tuple[str, str]]) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    def bucket(prefix: str) -> int:
        return sum(n for k, n in phase.statuses.items() if k.startswith(prefix))

    return {
        "phase": phase.name, "users": phase.users, "duration_s": round(phase.elapsed_s, 1),
        "requests": len(phase.latencies_ms),
        "throughput_rps": round(len(phase.latencies_ms) / phase.elapsed_s, 2) if phase.elapsed_s else 0.0,
        "p50_ms": pct(phase.latencies_ms, 50), "p95_ms": pct(phase.latencies_ms, 95),
        "p99_ms": pct(phase.latencies_ms, 99),
        "endpoints": {name: {"requests": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "p99_ms": pct(v, 99)}
                      for name, v in sorted(phase.by_endpoint.items())},
        "statuses": dict(sorted(phase.statuses.items())), "status_2xx": bucket("2"), "status_4xx": bucket("4"),
        "status_5xx": bucket("5"), "transport_errors": bucket("transport"),
        "turns_acknowledged": len(phase.acknowledged), "turns_stored": len(stored),
        "lost_turns": len(phase.acknowledged - stored),
        "unacknowledged_stored_turns": len(stored - phase.acknowledged),
        "fallback_reasons": dict(sorted(phase.fallbacks.items())),
    }


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["phase", "users", "duration_s", "requests", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "status_2xx",
            "status_4xx", "status_5xx", "transport_errors", "turns_acknowledged", "turns_stored", "lost_turns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.load_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20, help="concurrent virtual users with the LLM off")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--llm-users", type=int, default=5, help="concurrent virtual users with the local model")
    parser.add_argument("--llm-duration", type=float, help="seconds of the LLM phase (default: --duration)")
    parser.add_argument("--skip-llm", action="store_true", help="run the LLM-off phase only")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request, seconds")
    parser.add_argument("--home", help="state folder for the app (default: a new temporary folder)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="fusionrec-load-bench-"))
    users = [f"u{n:04d}" for n in range(1, max(args.users, args.llm_users) + 1)]
    keys = {f"load-{uuid.uuid4().hex[:12]}": user for user in users}  # one key per virtual user, each its own user
    env = {"FUSIONREC_LOG_LEVEL": "WARNING", "FUSIONREC_API__KEYS": json.dumps(keys), "FUSIONREC_API__RATE_LIMIT_PER_MINUTE": "1000000"}
    run = uuid.uuid4().hex[:6]
    phases = [("llm_off", "off", args.users, args.duration)]
    if not args.skip_llm:
        phases.append(("llm_local", "local", args.llm_users, args.llm_duration or args.duration))
    rows = []
    for name, backend, n_users, duration in phases:
        print(f"[{name}] starting the app on {home} ...", flush=True)
        app = AppProcess(home, {**env, "FUSIONREC_LLM__BACKEND": backend})
        phase = Phase(name, n_users, duration, f"load-{run}-{name}-")
        try:
            print(f"[{name}] {n_users} users for {duration:.0f}s against {app.url}", flush=True)
            run_phase(phase, app, list(keys), args.timeout)
        finally:
            app.stop()
        rows.append(summary(phase, stored_turns(app.sessions_db(), phase.prefix)))
    print(table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"home": str(home), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
