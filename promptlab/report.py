"""Summaries of prompt-lab runs: metrics per variant, the cases whose outcome changed between variants
(with a diff of the picks), as markdown and as a small self-contained HTML page (all text escaped).

Metrics are measured on each case's own message (its last turn); replayed turns only set the scene.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptlab.cases import EXPECTATION_TYPES
from promptlab.runner import CaseRun, VariantRun


def _rate(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.0f}%)" if den else "–"


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def metrics(run: VariantRun) -> dict[str, Any]:
    cases = run.cases
    per_type: dict[str, list[int]] = {}
    for case in cases:
        for check in case.checks:
            counts = per_type.setdefault(check.name, [0, 0])
            counts[0] += int(check.passed)
            counts[1] += 1
    targets = [c for c in cases if c.targets]
    finals = [c.final for c in cases if not c.error]
    recs = [f for f in finals if f.get("kind") == "recommendations"]
    calls = [call for f in finals for call in f.get("raw_llm", [])]
    parsed = [c for c in calls if c.get("ok") or c.get("error") == "invalid_json"]
    with_llm = [f for f in finals if f.get("raw_llm")]
    answered = [c for c in calls if c.get("prompt_tokens")]
    shown = [len(t.shown) for c in cases if not c.error for t in c.turns[-1:] if t.shown]
    latencies = [float(f.get("timings_ms", {}).get("total_ms", 0.0)) for f in finals]
    return {
        "cases": len(cases),
        "hard_pass": (sum(c.ok for c in cases), len(cases)),
        "known_bugs": (sum(1 for c in cases if c.known_bug and not c.ok), sum(1 for c in cases if c.known_bug)),
        "errors": sum(1 for c in cases if c.error),
        "per_type": {k: tuple(v) for k, v in per_type.items()},
        "hit": (sum(bool(c.hit) for c in targets), len(targets)),
        "json_valid": (sum(1 for c in parsed if c.get("ok")), len(parsed)),
        "fallback": (sum(1 for f in recs if not f.get("llm_used")), len(recs)),
        "prompt_tokens": _mean([float(f.get("tokens", {}).get("prompt", 0)) for f in with_llm]),
        "completion_tokens": _mean([float(f.get("tokens", {}).get("completion", 0)) for f in with_llm]),
        "prompt_per_call": _mean([float(c["prompt_tokens"]) for c in answered]),
        "calls_per_turn": _mean([float(len(f.get("raw_llm", []))) for f in with_llm]),
        "shown": _mean([float(n) for n in shown]),
        "p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "p95_ms": float(np.percentile(latencies, 95)) if latencies else None,
    }


def metric_rows(runs: list[VariantRun]) -> list[list[str]]:
    """[metric, value per run] rows of the side-by-side table."""
    ms = [metrics(r) for r in runs]
    types = [t for t in ("error", *EXPECTATION_TYPES) if any(t in m["per_type"] for m in ms)]

    def num(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    rows = [["must-hold pass (cases)", *(_rate(*m["hard_pass"]) for m in ms)],
            ["· known bugs still failing", *(_rate(*m["known_bugs"]) for m in ms)]]
    for t in types:
        rows.append([f"· {t}", *(_rate(*m["per_type"].get(t, (0, 0))) for m in ms)])
    rows += [
        ["hit rate (held-out targets)", *(_rate(*m["hit"]) for m in ms)],
        ["JSON valid (LLM calls)", *(_rate(*m["json_valid"]) for m in ms)],
        ["fallback (fusion only)", *(_rate(*m["fallback"]) for m in ms)],
        ["mean prompt tokens per turn", *(num(m["prompt_tokens"], ".0f") for m in ms)],
        ["mean completion tokens per turn", *(num(m["completion_tokens"], ".1f") for m in ms)],
        ["mean prompt tokens per answered call", *(num(m["prompt_per_call"], ".0f") for m in ms)],
        ["mean LLM calls per turn", *(num(m["calls_per_turn"], ".2f") for m in ms)],
        ["mean candidates shown to the LLM", *(num(m["shown"], ".1f") for m in ms)],
        ["latency p50 ms", *(num(m["p50_ms"], ".0f") for m in ms)],
        ["latency p95 ms", *(num(m["p95_ms"], ".0f") for m in ms)],
    ]
    return rows


def outcome(case: CaseRun) -> tuple[Any, ...]:
    failed = tuple(sorted(c.name for c in case.checks if not c.passed))
    return case.ok, failed, case.final.get("kind"), tuple(case.picks), case.hit


def status(case: CaseRun) -> str:
    failed = [f"{c.name}{'' if c.hard else ' (soft)'}" for c in case.checks if not c.passed]
    head = "ok" if case.ok else ("FAIL (known bug)" if case.known_bug else "FAIL")
    return head + (f": {', '.join(failed)}" if failed else "")


def picks_diff(base: list[str], other: list[str]) -> str:
    if base == other:
        return "same picks"
    added = [i for i in other if i not in base]
    removed = [i for i in base if i not in other]
    if not added and not removed:
        return "same items, new order: " + " ".join(other)
    return " ".join([*(f"+{i}" for i in added), *(f"-{i}" for i in removed)])


@dataclass
class CaseChange:
    case_id: str
    cells: list[str]  # per variant: status, kind, picks, diff against the first variant


def changed_cases(runs: list[VariantRun]) -> list[CaseChange]:
    """Cases whose outcome (pass/fail, failed checks, kind, picks, hit) differs between variants."""
    by_variant = [{c.case_id: c for c in r.cases} for r in runs]
    changes = []
    for case_id in by_variant[0] if by_variant else {}:
        cases = [v.get(case_id) for v in by_variant]
        if any(c is None for c in cases):
            continue
        present = [c for c in cases if c is not None]
        if len({outcome(c) for c in present}) <= 1:
            continue
        base = present[0].picks
        cells = []
        for k, c in enumerate(present):
            diff = "" if k == 0 else f" | {picks_diff(base, c.picks)}"
            cells.append(f"{status(c)} | {c.final.get('kind', '-')} | {' '.join(c.picks) or '(no picks)'}{diff}")
        changes.append(CaseChange(case_id, cells))
    return changes


def provenance_rows(runs: list[VariantRun]) -> list[list[str]]:
    return [[r.label, r.prompt_set, r.backend, r.model,
             ", ".join(f"{k}={v}" for k, v in sorted(r.prompt_hashes.items())),
             ", ".join(f"{k}={v}" for k, v in sorted(r.config.items()) if k != "blend_weight")
             + f", blend_weight={r.config.get('blend_weight')}", f"{r.seconds:.0f}s", r.started] for r in runs]


PROVENANCE_HEADER = ["variant", "prompt set", "backend", "model (identity)", "prompt hashes", "config", "run", "started"]


def failures(run: VariantRun) -> list[list[str]]:
    rows = []
    for case in run.cases:
        for check in case.checks:
            if not check.passed:
                severity = "soft" if not check.hard else ("hard, known bug" if case.known_bug else "hard")
                rows.append([case.case_id, check.name, severity, check.detail])
    return rows


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(runs: list[VariantRun], title: str = "Prompt lab") -> str:
    labels = [r.label for r in runs]
    parts = [f"## {title}", "", md_table(["metric", *labels], metric_rows(runs)), ""]
    if len(runs) > 1:
        changes = changed_cases(runs)
        parts += [f"### Cases whose outcome changed ({len(changes)})", ""]
        if changes:
            parts += [md_table(["case", *labels], [[c.case_id, *c.cells] for c in changes]), ""]
    for run in runs:
        rows = failures(run)
        if rows:
            parts += [f"### Failed expectations: {run.label}", "", md_table(["case", "check", "", "detail"], rows), ""]
    parts += ["### Reproducibility", "", md_table(PROVENANCE_HEADER, provenance_rows(runs)), ""]
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}"
         "th{background:#f3f3f3}h2,h3{margin-top:1.5em}")


def html_report(runs: list[VariantRun], title: str = "Prompt lab") -> str:
    """A self-contained page (inline CSS, no scripts); every piece of text is escaped."""
    labels = [r.label for r in runs]
    parts = [f"<h2>{html.escape(title)}</h2>", _html_table(["metric", *labels], metric_rows(runs))]
    if len(runs) > 1:
        changes = changed_cases(runs)
        parts.append(f"<h3>Cases whose outcome changed ({len(changes)})</h3>")
        if changes:
            parts.append(_html_table(["case", *labels], [[c.case_id, *c.cells] for c in changes]))
    for run in runs:
        rows = failures(run)
        if rows:
            parts += [f"<h3>Failed expectations: {html.escape(run.label)}</h3>",
                      _html_table(["case", "check", "", "detail"], rows)]
    parts += ["<h3>Reproducibility</h3>", _html_table(PROVENANCE_HEADER, provenance_rows(runs))]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
