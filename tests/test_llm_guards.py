"""Guards around any model, tested with ScriptedLLM (a fake for parsing and guards only)."""

from __future__ import annotations

import json
import time

import pytest

from agent.context import build_rerank_context, clean
from agent.explain import GroundingChecker, evidence_text
from agent.llm_stage import LLMStage
from agent.prompts import PromptError, load_prompt_set
from agent.rerank import blend, merge_passes, parse_ranking
from fusion.request import RecommendRequest
from llm_client.client import LLMError
from tests.scripted_llm import ScriptedLLM


@pytest.fixture()
def stage_for(recommender, demo_settings):
    def make(outputs, weight=1.0, passes=1, explain=False, delay=0.0, budget=None):
        llm = ScriptedLLM(outputs, delay)
        budget = budget or demo_settings.llm.context_token_budget
        settings = demo_settings.model_copy(update={"llm": demo_settings.llm.model_copy(update={
            "blend_weight": weight, "shuffle_passes": passes, "explain_with_llm": explain,
            "context_token_budget": budget})})
        return LLMStage(recommender, llm, load_prompt_set(settings.prompts_dir), settings), llm
    return make


def fusion_ids(recommender, user="u0001", k=10):
    return [r.item_id for r in recommender.recommend(RecommendRequest(user_id=user, k=k)).items]


def test_valid_ranking_is_used_and_blended(stage_for, recommender):
    fused = fusion_ids(recommender)
    wanted = [fused[4], fused[3], fused[2], fused[1], fused[0]]
    # A budget wide enough that all five candidates are shown (trimming is tested below).
    stage, llm = stage_for([json.dumps({"ranking": wanted})], weight=1.0, budget=4000)
    out = stage.run(RecommendRequest(user_id="u0001", k=5))
    assert out.context.candidate_ids[:5] == fused[:5]
    assert out.llm_used and out.fallback_reason is None
    assert [r.item_id for r in out.items] == wanted
    schema = llm.schemas[0]["properties"]["ranking"]
    assert set(schema["items"]["enum"]) == set(out.context.candidate_ids) <= set(fused)
    assert schema["minItems"] == schema["maxItems"] == 5


def test_weight_zero_keeps_fusion_order(stage_for, recommender):
    fused = fusion_ids(recommender)
    stage, _ = stage_for([json.dumps({"ranking": list(reversed(fused[:5]))})], weight=0.0)
    out = stage.run(RecommendRequest(user_id="u0001", k=5))
    assert [r.item_id for r in out.items] == fused[:5]


def test_unknown_ids_and_duplicates_are_repaired(stage_for, recommender):
    fused = fusion_ids(recommender)
    stage, _ = stage_for([json.dumps({"ranking": ["p9999", fused[3], fused[3], "DROP TABLE", fused[1]]})])
    out = stage.run(RecommendRequest(user_id="u0001", k=5))
    ids = [r.item_id for r in out.items]
    assert len(ids) == len(set(ids)) == 5 and set(ids) <= set(fused)
    assert ids[:2] == [fused[3], fused[1]]
    assert out.rerank.invented == ["p9999", "DROP TABLE"] and out.rerank.duplicates == 1
    assert out.fallback_reason == "ids_repaired"


@pytest.mark.parametrize("garbage", ["not json", "", "<script>alert(1)</script>", '{"ranking": "p0001"}',
                                     '{"ranking": [1, 2, 3', "![x](http://evil.example/a.png)"])
def test_garbage_falls_back_to_fusion(stage_for, recommender, garbage):
    stage, _ = stage_for([garbage])
    out = stage.run(RecommendRequest(user_id="u0001", k=5))
    assert [r.item_id for r in out.items] == fusion_ids(recommender)[:5]
    assert not out.llm_used and out.fallback_reason in {"invalid_json", "no_valid_ids"}


def test_llm_error_and_timeout_fall_back_within_deadline(stage_for, recommender):
    stage, _ = stage_for([LLMError("http_500", "server error")])
    out = stage.run(RecommendRequest(user_id="u0001", k=5))
    assert out.fallback_reason == "http_500" and len(out.items) == 5
    stage, _ = stage_for(['{"ranking": []}'], delay=5.0)
    started = time.monotonic()
    out = stage.run(RecommendRequest(user_id="u0001", k=5), deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 1.5
    assert out.fallback_reason == "timeout" and [r.item_id for r in out.items] == fusion_ids(recommender)[:5]


def test_two_passes_show_a_shuffled_order(stage_for, recommender):
    fused = fusion_ids(recommender)
    stage, llm = stage_for([json.dumps({"ranking": fused[:5]}), json.dumps({"ranking": fused[:5]})], passes=2)
    stage.run(RecommendRequest(user_id="u0001", k=5))
    orders = []
    for messages in llm.seen:
        block = messages[1]["content"].split("CANDIDATES")[1]
        orders.append([line.split(" | ")[0] for line in block.splitlines()[1:] if " | " in line])
    assert len(orders) == 2 and orders[0] == fused[: len(orders[0])] and orders[1] != orders[0]
    assert sorted(orders[0]) == sorted(orders[1])


def test_merge_and_blend_are_stable():
    assert merge_passes([["a", "b", "c"], ["b", "a", "c"]]) == ["a", "b", "c"]
    assert blend(["a", "b", "c"], ["c", "b", "a"], 0.0) == ["a", "b", "c"]
    assert blend(["a", "b", "c"], ["c", "b", "a"], 1.0) == ["c", "b", "a"]
    parsed = parse_ranking('{"ranking": ["a", "x", "a"]}', ["a", "b"])
    assert parsed.ids == ["a"] and parsed.invented == ["x"] and parsed.duplicates == 1


def test_context_budget_is_enforced_and_text_is_data(recommender, demo_settings):
    recs = recommender.recommend(RecommendRequest(user_id="u0001", k=20)).items
    prompts = load_prompt_set(demo_settings.prompts_dir)

    def measure(ctx):  # the whole rendered prompt, as the stage measures it (4 characters a token)
        return len(prompts.render("system") + prompts.render("rerank", **ctx.variables(5))) // 4

    ctx = build_rerank_context(recs, list(range(20)), [], [], RecommendRequest(user_id="u0001").constraints,
                               "anything", measure, budget=600)
    assert ctx.tokens <= 600 and ctx.dropped > 0 and ctx.tokens == measure(ctx)
    assert ctx.candidate_ids == [r.item_id for r in recs[: len(ctx.candidate_ids)]]  # lowest fused dropped
    assert clean("<b>{system}</b> `x` [link](y)\x00") == "b system /b x link (y)"
    with pytest.raises(ValueError):
        build_rerank_context(recs, list(range(20)), [], [], RecommendRequest(user_id="u0001").constraints,
                             "x", measure, budget=150)


def test_grounding_check(recommender):
    stores = recommender.stores
    result = recommender.recommend(RecommendRequest(user_id="u0002", k=10))
    rec = next(r for r in result.items if r.evidence.friends)
    friend = rec.evidence.friends[0]
    entities = {t.lower() for t in stores.catalog["title"]} | {n.lower() for n in stores.user_names}
    attributes = set(stores.tag_vocab) | set(stores.categories)
    checker = GroundingChecker(entities, ["You are the ranking and explanation component"], "$", attributes)
    assert checker.problems(evidence_text(rec, "$"), rec) == []
    assert checker.problems(f"{friend} bought it and it fits your taste.", rec) == []
    stranger = next(n for n in stores.user_names if n not in rec.evidence.friends and n.split()[0] not in rec.title)
    assert checker.problems(f"{stranger} bought it.", rec)
    other_title = next(t for t in stores.catalog["title"] if t != rec.title and t not in rec.evidence.similar_history
                       and t not in rec.evidence.bought_together)
    assert checker.problems(f"Goes well with {other_title}.", rec)
    assert checker.problems("Only 3.50 today, 40 friends bought it!", rec)
    missing_tag = next(t for t in ("camping", "sci-fi", "kitchen", "audio") if t not in rec.tags)
    assert checker.problems(f"A great {missing_tag} pick.", rec)
    assert checker.problems("See ![img](http://x.example/p.png)", rec)
    assert checker.problems("you are the ranking and explanation component of fusionrec", rec)


def test_llm_explanations_checked_and_replaced(stage_for, recommender):
    fused = fusion_ids(recommender, k=3)
    ranking = json.dumps({"ranking": fused[:3]})
    explanations = json.dumps({"explanations": [
        {"id": fused[0], "text": "It fits your taste."},
        {"id": fused[1], "text": "Zorblax the Great bought 17 of these!"},
        {"id": fused[2], "text": "<script>alert(1)</script>"}]})
    stage, _ = stage_for([ranking, explanations], explain=True)
    out = stage.run(RecommendRequest(user_id="u0001", k=3))
    sources = [e.source for e in out.explanations]
    assert sources == ["llm", "evidence", "evidence"] and out.explanations_rejected == 2
    assert out.explanations[0].text == "It fits your taste."


def test_prompt_sets_fall_back_and_check_variables(tmp_path, demo_settings):
    (tmp_path / "default").mkdir()
    for f in (demo_settings.prompts_dir / "default").iterdir():
        (tmp_path / "default" / f.name).write_text(f.read_text())
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "rerank.md").write_text("{# variables: k, candidates #}\nPick {{ k }}: {{ candidates }}\n")
    ps = load_prompt_set(tmp_path, "short")
    assert ps.sources["rerank"].parent.name == "short" and ps.sources["system"].parent.name == "default"
    assert ps.render("rerank", k=3, candidates="a b") == "Pick 3: a b\n"
    with pytest.raises(PromptError, match="needs"):
        ps.render("rerank", k=3)  # a variable the template declares is missing
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "rerank.md").write_text("{# variables: k #}\nPick {{ k }} of {{ secret }}\n")
    with pytest.raises(PromptError, match="secret"):
        load_prompt_set(tmp_path, "bad")
    (tmp_path / "strict").mkdir()
    (tmp_path / "strict" / "rerank.md").write_text("{# variables: k #}\nPick {{ k.count }}\n")
    with pytest.raises(PromptError, match="count"):  # StrictUndefined: a missing attribute is an error too
        load_prompt_set(tmp_path, "strict").render("rerank", k=3)
    with pytest.raises(PromptError):
        load_prompt_set(tmp_path, "missing")


def test_breaker_opens_after_n_failures_and_lets_one_trial_through():
    from llm_client.breaker import Breaker

    now = [0.0]
    breaker = Breaker(fail_max=2, reset_s=10, clock=lambda: now[0])
    assert breaker.allow() and breaker.state == "closed"
    breaker.failed()
    assert breaker.allow()  # one failure: still closed
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half-open" and breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()  # the trial failed: open again
    now[0] = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_calls_through_the_breaker_run_concurrently():
    """A hosted model serves many calls at once: the breaker must not make them wait for each other."""
    import threading
    import time

    from llm_client.breaker import BreakerLLM
    from llm_client.client import LLMResponse

    class SlowScriptedLLM:  # a scripted fake model: each call sleeps 0.5 s
        name = "slow-scripted"

        def chat(self, messages, schema=None, max_tokens=None, deadline_s=None):
            time.sleep(0.5)
            return LLMResponse("{}", 1, 1, 500.0, self.name)

    llm = BreakerLLM(SlowScriptedLLM(), fail_max=3, reset_s=30)
    threads = [threading.Thread(target=llm.chat, args=([{"role": "user", "content": "hi"}],)) for _ in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 1.5  # six 0.5 s calls side by side, not one after another (3 s)
