"""The LLM layer with real models: SmolLM2-135M through llama.cpp, and the same GGUF behind a real
`python -m llama_cpp.server` on loopback (the hosted backend), plus a deliberately faulty HTTP server
on loopback for timeouts, HTTP 500 and garbage."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.llm_stage import LLMStage
from agent.prompts import load_prompt_set
from agent.rerank import ranking_schema
from agent.settings import AgentLLMSettings
from catalog.constraints import Constraints
from fusion.request import RecommendRequest
from llm_client.client import HostedLLM, LocalLLM, default_model_path
from tests.conftest import LLM_TIMEOUT_S, free_port, stop_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_llm():
    return LocalLLM(AgentLLMSettings(backend="local", n_ctx=2048, timeout_s=LLM_TIMEOUT_S))


def stage(recommender, settings, llm, **llm_overrides):
    s = settings.model_copy(update={"llm": settings.llm.model_copy(update={"blend_weight": 1.0, **llm_overrides})})
    return LLMStage(recommender, llm, load_prompt_set(s.prompts_dir), s)


def test_local_schema_constrained_json_is_valid(local_llm):
    ids = ["p0001", "p0002", "p0003", "p0004", "p0005"]
    out = local_llm.chat([{"role": "user", "content": "Rank these ids: " + ", ".join(ids)}],
                         schema=ranking_schema(ids, 3), max_tokens=64)
    data = json.loads(out.text)
    assert len(data["ranking"]) == 3 and set(data["ranking"]) <= set(ids)
    assert out.prompt_tokens > 0 and out.completion_tokens > 0 and out.latency_ms > 0
    assert local_llm.identity().startswith("local:SmolLM2")


def test_local_rerank_end_to_end(recommender, demo_settings, local_llm):
    result = stage(recommender, demo_settings, local_llm).run(
        RecommendRequest(user_id="u0001", k=5, query="camping", constraints=Constraints(price_max=100)),
        "something for camping under $100")
    ids = [r.item_id for r in result.items]
    assert len(ids) == len(set(ids)) == 5
    assert all(r.price <= 100 for r in result.items)
    assert result.rerank is not None and result.rerank.calls and result.rerank.calls[0].raw
    assert result.llm_used or result.fallback_reason is not None
    fused = {r.item_id for r in result.fused.items}
    assert set(ids) <= fused  # never an invented item


def test_local_deadline_gives_fusion_in_time(recommender, demo_settings, local_llm):
    st = stage(recommender, demo_settings, local_llm)
    started = time.monotonic()
    result = st.run(RecommendRequest(user_id="u0002", k=5), deadline=time.monotonic() + 0.3)
    elapsed = time.monotonic() - started
    assert result.fallback_reason == "timeout" and len(result.items) == 5
    assert elapsed < 5.0  # prompt evaluation cannot be interrupted; generation stops at the deadline
    fused = [r.item_id for r in result.fused.items[:5]]
    assert [r.item_id for r in result.items] == fused


@pytest.fixture(scope="module")
def llama_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", default_model_path(),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start")
    yield url
    stop_process(proc)  # it may still be generating for a request the client gave up on


def test_hosted_backend_against_real_server(llama_server, recommender, demo_settings):
    llm = HostedLLM(AgentLLMSettings(backend="hosted", base_url=llama_server + "/v1", model="smollm2", timeout_s=LLM_TIMEOUT_S))
    ids = ["p0010", "p0020", "p0030", "p0040"]
    out = llm.chat([{"role": "user", "content": "Rank: " + ", ".join(ids)}], schema=ranking_schema(ids, 2))
    assert set(json.loads(out.text)["ranking"]) <= set(ids)
    assert out.prompt_tokens > 0
    result = stage(recommender, demo_settings, llm).run(RecommendRequest(user_id="u0003", k=4))
    assert len({r.item_id for r in result.items}) == 4
    assert result.llm_used or result.fallback_reason in {"invalid_json", "no_valid_ids"}


class FaultyHandler(BaseHTTPRequestHandler):
    mode = "500"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up first
            self.answer()

    def answer(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "slow":
            time.sleep(10)
        if self.mode == "drop":
            self.connection.close()
            return
        if self.mode == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "boom"}')
            return
        body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "<html>I am not JSON</html>"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.mark.parametrize("mode", ["500", "slow", "garbage", "drop"])
def test_hosted_faults_fall_back_within_deadline(mode, recommender, demo_settings):
    handler = type("Handler", (FaultyHandler,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = HostedLLM(AgentLLMSettings(backend="hosted", base_url=f"http://127.0.0.1:{server.server_port}/v1",
                                    timeout_s=1.5, max_retries=1))
        started = time.monotonic()
        result = stage(recommender, demo_settings, llm).run(RecommendRequest(user_id="u0004", k=5),
                                                            deadline=time.monotonic() + 4.0)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert elapsed < 5.0
    assert not result.llm_used and len(result.items) == 5
    expected = {"500": "http_500", "slow": "timeout", "garbage": "invalid_json", "drop": "connection"}[mode]
    assert result.fallback_reason == expected
    assert [r.item_id for r in result.items] == [r.item_id for r in result.fused.items[:5]]


def test_tool_choice_by_model_or_plan_fallback(llama_server, recommender, demo_settings, tmp_path):
    """A hosted model may pick the tools; whatever it does, the turn completes with read-only tools."""
    from agent.chat import ChatAgent
    from storage.sessions import SessionStore

    llm_settings = AgentLLMSettings(backend="hosted", base_url=llama_server + "/v1", model="smollm2", timeout_s=LLM_TIMEOUT_S,
                               tool_choice="model")
    settings = demo_settings.model_copy(update={"llm": llm_settings})
    agent = ChatAgent(recommender, HostedLLM(llm_settings), load_prompt_set(settings.prompts_dir), settings,
                      SessionStore(tmp_path / "s.sqlite"))
    turn = agent.turn("u0001", "camping gear under $100")
    assert turn.kind == "recommendations" and len(turn.items) == 5
    assert all(i.price <= 100 for i in turn.items)
    names = {s["name"] for s in turn.steps}
    assert names <= {"user_history", "item_attributes", "search_catalog", "semantic_search", "similar_items",
                     "friends_purchases", "popular_items"}
    chosen_by_model = "the model did not choose tools; used the built-in plan" not in turn.notes
    assert chosen_by_model or {"search_catalog", "semantic_search"} & names


def test_local_model_is_warmed_up_at_start_and_weight_zero_skips_it(recommender, demo_settings, local_llm, tmp_path):
    """The agent warms the real model up in the background; at a calibrated weight of 0 no turn calls it."""
    from agent.chat import ChatAgent
    from indexing.calibration import Calibration
    from storage.sessions import SessionStore

    agent = ChatAgent(recommender, local_llm, load_prompt_set(demo_settings.prompts_dir), demo_settings,
                      SessionStore(tmp_path / "s.sqlite"), calibration=Calibration(weight=0.0))
    assert agent.warm_up_thread is not None
    agent.warm_up_thread.join(LLM_TIMEOUT_S)
    steps = agent.llm_steps()
    assert steps["warm_up"]["why"].startswith("done"), steps["warm_up"]
    assert steps["rerank"] == {"active": False, "why": "calibrated weight 0", "weight": 0.0,
                               "passes": demo_settings.llm.shuffle_passes}
    turn = agent.turn("u0001", "camping gear under $100")
    assert turn.raw_llm == [] and not turn.llm_used and "rerank skipped: calibrated weight 0" in turn.notes
