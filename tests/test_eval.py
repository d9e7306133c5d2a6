"""`fusionrec eval` end to end on the demo data: the JSON rows, the table and chart, and the LLM rows."""

from __future__ import annotations

import json

import pytest

from cli.main import main as cli
from evals.ablation import SOURCE_FEATURES, check_partition

ROW_KEYS = {"method", "hr@10", "ndcg@10", "recall@20", "coverage", "p50_ms", "p95_ms"}
LLM_KEYS = {"json_valid_rate", "fallback_rate", "invented_items", "ungrounded_explanations", "llm_p50_ms",
            "llm_p95_ms", "floor_ratio"}


def test_eval_demo_rows_table_and_chart(demo_settings, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(["--home", str(demo_settings.home), "eval", "--data", "demo", "--quick", "--ablation",
                "--json", str(tmp_path / "eval.json"), "--out", str(out)])
    assert code == 0
    rows = json.loads((tmp_path / "eval.json").read_text())
    methods = [r["method"] for r in rows]
    assert methods == ["popularity", "item-knn", "content", "social", "mf-als", "ease", "rp3beta", "fusion", "served: fusion",
                       *(f"fusion-no-{s}" for s in SOURCE_FEATURES)]
    for row in rows:
        assert set(row) >= ROW_KEYS
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= 1 and row["p95_ms"] >= row["p50_ms"] >= 0
    by_method = {r["method"]: r for r in rows}
    fusion = by_method["fusion"]
    assert fusion["ndcg@10"] > max(r["ndcg@10"] for r in rows[:7])  # fusion ahead on the demo data
    # The ablation rows are scored on the same users; the demo's friends drive purchases, so hiding
    # the friends' evidence from the ranker costs the most.
    assert {r["users"] for r in rows} == {fusion["users"]}
    no_social = by_method["fusion-no-social"]["ndcg@10"]
    assert no_social < fusion["ndcg@10"] and no_social == min(by_method[f"fusion-no-{s}"]["ndcg@10"]
                                                             for s in SOURCE_FEATURES)
    assert (out / "eval.md").read_text().count("|") > 20 and (out / "eval.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "fusion NDCG@10 / best single baseline" in printed
    # The served ranker is chosen on validation, said why, and marked in the table with the best single row.
    assert "served ranker: fusion (fusion " in printed and "(best single) |" in printed
    assert by_method["served: fusion"]["selection"]["validation"]["fusion"] > 0


def test_ablation_assigns_every_fusion_feature_to_one_source():
    check_partition()  # raises if a feature is missing from SOURCE_FEATURES or owned twice
    assert set(SOURCE_FEATURES) == {"mf-als", "item-knn", "content", "social", "popularity", "ease", "rp3beta"}


@pytest.mark.slow
def test_eval_with_local_llm_reports_llm_rows(demo_settings, tmp_path):
    home = demo_settings.home
    code = cli(["--home", str(home), "eval", "--data", "demo", "--quick", "--llm", "local", "--llm-users", "6",
                "--json", str(tmp_path / "llm.json")])
    assert code == 0
    rows = json.loads((tmp_path / "llm.json").read_text())
    llm = rows[-1]
    assert llm["method"] == "fusion+llm" and set(llm) >= LLM_KEYS
    assert llm["invented_items"] == 0 and llm["ungrounded_explanations"] == 0
    assert 0 <= llm["json_valid_rate"] <= 1
    assert llm["floor_ratio"] > 0  # the local model's own speed is measured in the same run
    assert 0.0 <= llm["blend_weight"] <= 1.0
    # The weight chosen on validation is saved for this model and used by the app.
    calibration = json.loads((demo_settings.index_dir / "llm_calibration.json").read_text())
    assert any(k.startswith("local:SmolLM2") for k in calibration)
