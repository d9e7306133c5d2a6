"""Serving throughput: `POST /v1/recommend` with a message, LLM off, from wrk (a C load generator, so the
client takes little of the two cores) against the real app on 127.0.0.1, with 1 worker process and with N,
**in the same run**.

    python -m evals.bench_serve [--home DIR] [--workers 1 2] [--clients 20 --duration 60] [--json out.json]

Each request is a new conversation for one of 20 keyed users (a message from a rotation of ten, as in the
chat benchmark), so every answer writes a turn. Lost turns = answers with 200 minus turns in the database
(wrk does not see the answers of requests cut at the end, so the database may hold more, never fewer).
Memory: RSS and PSS (each shared page counted once, split between the processes that map it) summed over
the served processes, read from /proc after the load.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import psutil

from evals.app_process import AppProcess

MESSAGES = ["something for running", "a gift for my dad who likes cooking", "camping gear under $100",
            "headphones for the gym", "more like the last thing I bought", "a cheap desk lamp",
            "what do my friends like?", "a book about history", "something to keep coffee hot",
            "a present for a ten year old"]
USERS = [f"u{n:04d}" for n in range(1, 21)]

LUA = """
local bodies, keys, n = {}, {}, 0
%(setup)s
request = function()
  n = n + 1
  local k = (n %% #bodies) + 1
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. keys[k]}, bodies[k])
end
"""


def lua_script() -> str:
    lines = []
    for k, user in enumerate(USERS * 3):
        body = json.dumps({"message": MESSAGES[k % len(MESSAGES)], "k": 10})
        lines.append(f"bodies[#bodies + 1] = {json.dumps(body)}; keys[#keys + 1] = {json.dumps('key-' + user)}")
    return LUA % {"setup": "\n".join(lines)}


def parse_wrk(text: str) -> dict[str, Any]:
    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    out: dict[str, Any] = {"requests": int(re.search(r"(\d+) requests in", text).group(1))}  # type: ignore[union-attr]
    out["requests_per_s"] = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    for p in ("50", "90", "99"):
        found = re.search(rf"^\s+{p}(?:\.000)?%\s+(\S+)", text, re.M)
        out[f"p{p}_ms"] = ms(found.group(1)) if found else None
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return out


def memory(root_pid: int) -> dict[str, float]:
    rss = pss = 0
    procs = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
    for p in procs:
        with open(f"/proc/{p.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"processes": len(procs), "rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1)}


def count_turns(db: Path) -> int:
    with closing(sqlite3.connect(db)) as c:
        return int(c.execute("SELECT COUNT(*) FROM turns").fetchone()[0])


def run(home: Path, workers: int, clients: int, duration: int, script: Path) -> dict[str, Any]:
    keys = {f"key-{u}": u for u in USERS}
    env = {"FUSIONREC_LOG_LEVEL": "WARNING", "FUSIONREC_LLM__BACKEND": "off", "FUSIONREC_WORKERS": str(workers),
           "FUSIONREC_API__KEYS": json.dumps(keys), "FUSIONREC_API__RATE_LIMIT_PER_MINUTE": "100000000"}
    app = AppProcess(home, env)
    try:
        db = app.sessions_db()
        before = count_turns(db)
        # warm-up: every message once per process (its MiniLM embedding is then cached in that process)
        subprocess.run(["wrk", "-t1", "-c4", "-d5s", "-s", str(script), app.url], capture_output=True, check=True)
        warm = count_turns(db)
        started = time.monotonic()
        done = subprocess.run(["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{duration}s", "--latency",
                               "--timeout", "10s", "-s", str(script), app.url], capture_output=True, text=True, check=True)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        figures = parse_wrk(done.stdout)
        stored = count_turns(db) - warm
        acknowledged = figures["requests"] - figures["non_2xx"]
        figures.update(workers=workers, clients=clients, seconds=round(elapsed, 1), turns_stored=stored,
                       lost_turns=max(0, acknowledged - stored), warm_up_turns=warm - before, **memory(app.proc.pid))
        return figures
    finally:
        app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="a built demo home to copy (default: build one in a temporary folder)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed (Debian: apt-get install wrk; `make bench-serve` does it as root)")
    home = Path(tempfile.mkdtemp(prefix="fusionrec-bench-serve-"))
    if args.home:  # a copy: the benchmark's turns never reach the original
        for name in ("index", "chroma"):
            shutil.copytree(Path(args.home) / name, home / name)
        if (Path(args.home) / "embeddings.sqlite").is_file():
            shutil.copy(Path(args.home) / "embeddings.sqlite", home / "embeddings.sqlite")
    script = home / "recommend.lua"
    script.write_text(lua_script())
    rows = []
    for workers in args.workers:
        print(f"{workers} worker(s): {args.clients} clients for {args.duration} s ...", flush=True)
        rows.append(run(home, workers, args.clients, args.duration, script))
    base = rows[0]["requests_per_s"]
    print("\n| workers | processes | req/s | × first row | p50 ms | p90 ms | p99 ms | non-2xx | socket errors | "
          "lost turns | RSS MB | PSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['processes']} | {r['requests_per_s']:.1f} | {r['requests_per_s'] / base:.2f}× | "
              f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} | {r['socket_errors']} | "
              f"{r['lost_turns']} | {r['rss_mb']:.0f} | {r['pss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cores": psutil.cpu_count()}, indent=2))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
