"""The prompt-lab tab: one case (a starter case shipped with the package, or typed) run with two prompt sets side by side,
each through its own ChatAgent on the shared recommender and LLM, with the fused context and raw output.

The tab acts only as the logged-in user (``gr.Request.username``) or, in demo mode, as a demo persona; any
other typed user id is refused before anything runs.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import gradio as gr

from agent.prompts import load_prompt_set
from fusion.recommender import Recommender
from llm_client.client import LLM
from promptlab.cases import STARTER_CASES, Case, CaseFormatError, load_cases
from promptlab.checks import ItemFacts, catalog_facts, leak_snippets
from promptlab.runner import CaseRun, build_agent, run_case
from promptlab.settings import LabConfig
from storage.sessions import SessionStore

CASES_DIR = STARTER_CASES
TYPED = "(type your own)"
_MD_ESCAPE = re.compile(r"\\(.)")


def prompt_sets(prompts_dir: Path) -> list[str]:
    return sorted(p.name for p in prompts_dir.iterdir() if p.is_dir()) if prompts_dir.is_dir() else []


def starter_cases(folder: Path = CASES_DIR) -> tuple[dict[str, Case], str | None]:
    """Cases the tab can run on the live index (generated held-out cases need their own index)."""
    try:
        return {c.id: c for c in load_cases(folder) if not c.holdout}, None
    except CaseFormatError as exc:
        return {}, str(exc)


def plain(text: str) -> str:
    """An agent reply (markdown with escaped catalog text) back to the text the user reads."""
    return html.unescape(_MD_ESCAPE.sub(r"\1", text))


def _e(value: Any) -> str:
    return html.escape(str(value))


def answer_html(label: str, run: CaseRun, checks_title: str) -> str:
    """One side of the comparison; every piece of text is escaped."""
    final = run.final
    if run.error:
        return f"<h4>{_e(label)}</h4><p><b>error:</b> {_e(run.error)}</p>"
    rows = "".join(
        f"<tr><td>{_e(i.get('rank'))}</td><td>{_e(i.get('item_id'))}</td><td>{_e(i.get('title'))}</td>"
        f"<td>{_e(i.get('price'))}</td><td>{_e(i.get('explanation'))}</td></tr>" for i in final.get("items", []))
    table = (f"<table><tr><th>#</th><th>id</th><th>title</th><th>price</th><th>why</th></tr>{rows}</table>"
             if rows else "")
    tokens = final.get("tokens", {})
    facts = (f"kind <b>{_e(final.get('kind'))}</b> · LLM used: {_e(final.get('llm_used'))} · fallback: "
             f"{_e(final.get('fallback_reason') or '-')} · tokens {_e(tokens.get('prompt', 0))}+"
             f"{_e(tokens.get('completion', 0))} · {_e(final.get('timings_ms', {}).get('total_ms', 0))} ms")
    parts = [f"<h4>{_e(label)}</h4>", f"<p>{facts}</p>",
             f"<div style='white-space:pre-wrap'>{_e(plain(str(final.get('reply', ''))))}</div>", table]
    if run.checks:
        items = "".join(f"<li>{'✔' if c.passed else '✘'} {_e(c.name)} ({'hard' if c.hard else 'soft'})"
                        f"{': ' + _e(c.detail) if c.detail else ''}</li>" for c in run.checks)
        parts.append(f"<p>{_e(checks_title)}:</p><ul>{items}</ul>")
    return "".join(parts)


def context_text(run: CaseRun) -> str:
    """The fused context: the rendered rerank prompt when the LLM ran, else the fused candidate list."""
    final_turn = run.turns[-1] if run.turns else None
    if final_turn is None:
        return ""
    if final_turn.result.get("context"):
        return str(final_turn.result["context"])
    lines = [f"{f['item_id']} | {f['title']} | {f['category']} | {f['price']} | score {f['score']}"
             for f in final_turn.fused]
    return "\n".join(lines) or "(no fused candidates: this turn did not recommend)"


def raw_text(run: CaseRun) -> str:
    calls = [call for turn in run.turns for call in turn.result.get("raw_llm", [])]
    return json.dumps(calls, indent=1) if calls else "(no LLM call)"


@dataclass
class LabServices:
    """What the tab runs on: the served recommender and model, the settings, and who it may act as."""

    recommender: Recommender
    llm: LLM | None
    settings: LabConfig
    personas: list[str]  # demo personas the tab may act as (demo mode only)
    llm_error: str | None = None
    demo: bool = False  # False: the tab acts only as the logged-in user

    def acting_user(self, request: Any, typed: str) -> str | None:
        """Who a run may act as: the logged-in user (typed empty or the same id), a typed demo persona in
        demo mode, else None."""
        typed = typed.strip()
        if self.demo:
            return typed if typed in self.personas else None
        user = getattr(request, "username", None)
        return str(user) if user and typed in ("", user) else None


@dataclass
class LabTab:
    services: LabServices
    cases: dict[str, Case]

    @cached_property
    def facts(self) -> dict[str, ItemFacts]:  # built on first use, not when the UI starts
        return catalog_facts(self.services.recommender.stores)

    def case_for(self, case_id: str, user: str, message: str, conversation: str) -> tuple[Case, bool]:
        """The picked case when its fields are unchanged (its expectations apply), else a typed case."""
        history = [line.strip() for line in conversation.splitlines() if line.strip()]
        picked = self.cases.get(case_id)
        if picked and (picked.user, picked.message, picked.conversation) == (user.strip(), message, history):
            return picked, True
        return Case(id="typed", user=user.strip(), message=message, conversation=history), False

    def run_one(self, case: Case, prompt_set: str) -> CaseRun:
        settings = self.services.settings
        prompts = load_prompt_set(settings.prompts_dir, prompt_set)
        with tempfile.TemporaryDirectory(prefix="prompt-lab-tab-", ignore_cleanup_errors=True) as tmp:
            agent, recorder = build_agent(self.services.recommender, self.services.llm, prompts, settings,
                                          SessionStore(Path(tmp) / "sessions.sqlite"))
            return run_case(agent, recorder, case, self.facts, leak_snippets(list(prompts.texts.values())))

    def compare(self, case_id: str, user: str, message: str, conversation: str, set_a: str,
                set_b: str, request: gr.Request) -> tuple[str, str, str, str, str, str]:
        acting = self.services.acting_user(request, user)
        if acting is None:
            note = ("<p>The prompt lab runs only as a demo persona.</p>" if self.services.demo
                    else "<p>The prompt lab runs only as yourself: leave the user id empty or type your own.</p>")
            return note, "", "", note, "", ""
        if not message.strip():
            note = "<p>Pick a case or type a user id and a message.</p>"
            return note, "", "", note, "", ""
        case, checked = self.case_for(case_id, user if user.strip() else acting, message, conversation)
        if case.user != acting:  # never run a case as anyone but the acting user
            note = "<p>This case belongs to another user.</p>"
            return note, "", "", note, "", ""
        out: list[str] = []
        for name in (set_a, set_b):
            run = self.run_one(case, name)
            title = f"expectations of case {case.id}" if checked else "checks that apply to every answer"
            out += [answer_html(name, run, title), context_text(run), raw_text(run)]
        return out[0], out[1], out[2], out[3], out[4], out[5]

    def fill(self, case_id: str) -> tuple[str, str, str]:
        case = self.cases.get(case_id)
        return (case.user, case.message, "\n".join(case.conversation)) if case else ("", "", "")


def build_prompt_lab_tab(services: LabServices) -> None:
    """Create the tab's controls inside the current Gradio context (a ``gr.Tab``)."""
    cases, error = starter_cases()
    tab = LabTab(services, cases)
    sets = prompt_sets(services.settings.prompts_dir)
    default_b = next((s for s in sets if s != services.settings.prompt_set), services.settings.prompt_set)
    llm_note = (f"LLM: {services.llm.identity()}" if services.llm is not None
                else f"LLM off ({services.llm_error or 'backend off'}): fusion-only answers")
    gr.Markdown("Run one case with two prompt sets side by side. " + llm_note
                + (f"\n\nCases could not be loaded: {error}" if error else ""))
    with gr.Row():
        case_id = gr.Dropdown([TYPED, *cases], value=TYPED, label="case (starter suite)")
        user = gr.Textbox(label="user id" if services.demo else "user id (yours; empty = you)",
                          value=services.personas[0] if services.demo and services.personas else "")
    conversation = gr.Textbox(label="earlier messages (one per line, replayed first)", lines=2)
    message = gr.Textbox(label="message")
    with gr.Row():
        set_a = gr.Dropdown(sets, value=services.settings.prompt_set, label="prompt set A")
        set_b = gr.Dropdown(sets, value=default_b, label="prompt set B")
    run = gr.Button("Run both", variant="primary")
    outputs = []
    with gr.Row():
        for side in ("A", "B"):
            with gr.Column():
                answer = gr.HTML(label=f"answer {side}")
                with gr.Accordion(f"fused context {side}", open=False):
                    context = gr.Textbox(lines=12, max_lines=30, show_label=False)
                with gr.Accordion(f"raw LLM output {side}", open=False):
                    raw = gr.Code(language="json")
                outputs += [answer, context, raw]
    case_id.change(tab.fill, inputs=case_id, outputs=[user, message, conversation])
    run.click(tab.compare, inputs=[case_id, user, message, conversation, set_a, set_b], outputs=outputs,
              api_name="prompt_lab_compare")
