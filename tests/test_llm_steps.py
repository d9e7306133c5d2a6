"""No wasted model calls: which LLM steps run follows what calibration measured for the model, counted with
ScriptedLLM (a fake model that records every call; used for the stage's decisions only)."""

from __future__ import annotations

import json

import pytest

from agent.chat import ChatAgent
from agent.prompts import load_prompt_set
from indexing.calibration import Calibration, load_calibration, save_blend_weight, save_explain_acceptance
from storage.sessions import SessionStore
from tests.scripted_llm import ScriptedLLM

MESSAGE = "camping gear under $100"


@pytest.fixture()
def agent_for(recommender, demo_settings, tmp_path):
    def make(calibration: Calibration | None, outputs: list[str] | None = None, warm_up: bool = False, **llm):
        settings = demo_settings.model_copy(update={"llm": demo_settings.llm.model_copy(update=llm)})
        scripted = ScriptedLLM(outputs or [])
        agent = ChatAgent(recommender, scripted, load_prompt_set(settings.prompts_dir), settings,
                          SessionStore(tmp_path / "sessions.sqlite"), calibration=calibration, warm_up=warm_up)
        return agent, scripted
    return make


def purposes(turn) -> list[str]:
    return [c["purpose"] for c in turn.raw_llm]


def test_calibrated_weight_zero_makes_no_rerank_call(agent_for):
    agent, llm = agent_for(Calibration(weight=0.0))
    turn = agent.turn("u0001", MESSAGE)
    assert turn.kind == "recommendations" and len(turn.items) == 5
    assert llm.seen == [] and purposes(turn) == []
    assert "rerank skipped: calibrated weight 0" in turn.notes
    assert "rerank skipped" not in turn.reply  # said to callers, not in the answer's prose
    assert agent.llm_steps()["rerank"] == {"active": False, "why": "calibrated weight 0", "weight": 0.0,
                                           "passes": agent.settings.llm.shuffle_passes}


def test_uncalibrated_model_is_not_called_either(agent_for):
    agent, llm = agent_for(None)
    agent.turn("u0001", MESSAGE)
    assert llm.seen == []
    steps = agent.llm_steps()
    assert not steps["rerank"]["active"] and "not calibrated" in steps["rerank"]["why"]
    assert not steps["explain"]["active"] and "not measured" in steps["explain"]["why"]


def test_a_weight_above_zero_calls_the_rerank(agent_for, recommender):
    agent, llm = agent_for(Calibration(weight=0.5), shuffle_passes=1)
    turn = agent.turn("u0001", MESSAGE)
    assert purposes(turn) == ["rerank"] and len(llm.seen) == 1
    assert agent.llm_steps()["rerank"]["active"] and agent.llm_steps()["rerank"]["why"] == "calibrated weight 0.5"


@pytest.mark.parametrize("message", ["the cheapest electronics item you have", "what's popular among my friends?"])
def test_an_exact_order_is_never_reranked(agent_for, message):
    """Cheapest first, most friends first: facts about the catalog that a model may not move."""
    agent, llm = agent_for(Calibration(weight=0.5), shuffle_passes=1)
    turn = agent.turn("u0001", message)
    assert turn.items and "rerank" not in purposes(turn)
    assert any(n.startswith("rerank skipped:") and "exact" in n for n in turn.notes)


def explanations_for(agent: ChatAgent) -> str:
    fused = agent.turn("u0002", MESSAGE, use_llm=False).items
    return json.dumps({"explanations": [{"id": r.item_id, "text": "It fits."} for r in fused]})


@pytest.mark.parametrize(("acceptance", "called"), [(0.2, False), (None, False), (0.8, True)])
def test_explanations_are_phrased_by_the_model_only_where_grounding_accepted_most(agent_for, acceptance, called):
    agent, llm = agent_for(Calibration(weight=0.5, explain_acceptance=acceptance, explain_proposed=100),
                           shuffle_passes=1)
    llm.outputs = ['{"ranking": []}', explanations_for(agent)]
    turn = agent.turn("u0002", MESSAGE)
    assert ("explain" in purposes(turn)) is called
    assert agent.llm_steps()["explain"]["active"] is called
    if not called:
        assert any(n.startswith("explanations from evidence without the model") for n in turn.notes)
        assert {i.explanation_source for i in turn.items} == {"evidence"}
    if acceptance == 0.2:
        assert agent.llm_steps()["explain"]["why"] == \
            "the grounding check accepted 20% of 100 phrasings (needs 50%)"


def test_explicit_settings_win_over_calibration(agent_for):
    agent, llm = agent_for(Calibration(weight=0.0, explain_acceptance=0.1), blend_weight=1.0, shuffle_passes=1,
                           explain_with_llm=True)
    llm.outputs = ['{"ranking": []}', explanations_for(agent)]
    assert purposes(agent.turn("u0002", MESSAGE)) == ["rerank", "explain"]


def test_warm_up_is_one_tiny_call_off_the_request_path(agent_for):
    agent, llm = agent_for(Calibration(weight=0.0), outputs=["ok"], warm_up=True)
    assert agent.warm_up_thread is not None
    agent.warm_up_thread.join(10)
    assert len(llm.seen) == 1 and llm.seen[0][0]["role"] == "system"
    assert agent.llm_steps()["warm_up"]["why"].startswith("done")


def test_calibration_file_keeps_weight_and_grounding_acceptance(tmp_path):
    save_blend_weight(tmp_path, "local:m", 0.25, {"validation_users": 3})
    save_explain_acceptance(tmp_path, "local:m", accepted=3, proposed=12)
    assert load_calibration(tmp_path, "local:m") == Calibration(weight=0.25, explain_acceptance=0.25,
                                                                explain_proposed=12)
    assert load_calibration(tmp_path, "local:other") == Calibration()
