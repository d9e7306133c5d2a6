"""Item upsert latency of the live catalog API: 50 PUTs of new items through the running app on the demo data
(embedding, Chroma upsert and the grown arrays included). Prints p50 / p95 in ms; the issue's target is
p95 <= 200 ms.

    python -m evals.bench_items [--home DIR] [--n 50]

``--home``: a built demo home to copy (the edits are stored in the copy's database, never in the original);
without it the app builds the demo index in a temporary folder first (a minute or two).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import httpx
import numpy as np

from evals.app_process import AppProcess
from evals.bench_events import private_home

OPERATOR_KEY = "bench-operator"


def bench(url: str, n: int) -> dict[str, float]:
    client_ms, server_ms = [], []
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as http:
        for k in range(n):
            body = {"title": f"Bench Gadget {k}", "category": "electronics", "tags": ["bench", f"batch-{k % 5}"],
                    "description": f"Benchmark gadget number {k} with a distinctive description.", "price": 10 + k}
            started = time.perf_counter()
            r = http.put(f"/v1/items/bench-{k:03d}", json=body)
            client_ms.append((time.perf_counter() - started) * 1000)
            r.raise_for_status()
            server_ms.append(r.json()["timings_ms"]["total_ms"])
    return {"client_p50": float(np.percentile(client_ms, 50)), "client_p95": float(np.percentile(client_ms, 95)),
            "server_p50": float(np.percentile(server_ms, 50)), "server_p95": float(np.percentile(server_ms, 95))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="state folder with (or for) the demo index")
    parser.add_argument("--n", type=int, default=50, help="how many new items to PUT")
    args = parser.parse_args(argv)
    home = private_home(str(args.home) if args.home else None)  # the benchmark's items never reach the original
    app = AppProcess(home, {"FUSIONREC_LLM__BACKEND": "off", "FUSIONREC_DATA": "demo",
                            "FUSIONREC_API__OPERATOR_KEYS": f'["{OPERATOR_KEY}"]'})
    try:
        figures = bench(app.url, args.n)
    finally:
        app.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"item upsert latency over {args.n} PUTs of new items (demo data, embedding included)")
    print(f"  through HTTP: p50 {figures['client_p50']:.1f} ms, p95 {figures['client_p95']:.1f} ms")
    print(f"  in the app:   p50 {figures['server_p50']:.1f} ms, p95 {figures['server_p95']:.1f} ms  (target p95 <= 200 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
