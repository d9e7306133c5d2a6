"""The Gradio chat UI: a login (user id + the API key bound to it) or, in demo mode only, a persona picker;
streamed turns with tool steps, recommendation cards, and the fused context / raw LLM output of the last turn.

Every handler acts as the user of the server-side session (``gr.Request.username`` after a login) or, in
demo mode, as one of the demo personas; a user id sent by the client is never trusted beyond that."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import gradio as gr

from agent.chat import BadRequest, TooLarge, TurnResult
from agent.reply import safe
from loaders.schema import UnknownUser
from storage.sessions import SessionError
from web.services import Services
from web.ui_feedback import FeedbackKind, FeedbackRefused, feedback_kinds, record_feedback, refresh_message
from web.ui_render import (
    CARDS_CSS,
    NO_CARDS,
    cards_html,
    error_message,
    intent_message,
    notice_html,
    profile_html,
    status_message,
    step_message,
    turn_info,
)

log = logging.getLogger("fusionrec.ui")
DEFAULT_PERSONA = "u0001"
CHUNK_WORDS = 4
CHUNK_PAUSE_S = 0.012
LOGIN_MESSAGE = "Log in with your user id and the API key bound to it."


class NotAllowed(PermissionError):
    """The browser session may not act as the user it asked for."""


USER_ERRORS = (BadRequest, TooLarge, UnknownUser, SessionError, NotAllowed)
EXAMPLES = ["camping gear under $100", "cheaper", "not the first one", "more like the second one",
            "something my friends liked", "a sci-fi novel as a gift"]


def ready() -> Any:
    """The message box, emptied and open for the next message."""
    return gr.Textbox(value="", interactive=True)


def take_message(message: str) -> tuple[str, Any, str]:
    """Hand the typed message to the turn; empty and lock the box until the turn is over (and clear the last
    feedback notice)."""
    return message, gr.Textbox(value="", interactive=False), ""


@dataclass
class Conversation:
    """Per-browser-session state: the acting persona, its agent session id, and what the chat shows."""

    user_id: str
    session_id: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)


def stream_turn(services: Services, user_id: str, message: str,
                session_id: str | None) -> Iterator[tuple[str, Any]]:
    """Run one agent turn in a worker thread and yield its events as they happen, then
    ("result", TurnResult) or ("error", exception)."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def work() -> None:
        try:
            result = services.agent.turn(user_id, message, session_id=session_id,
                                         on_event=lambda kind, payload: events.put((kind, payload)))
            events.put(("result", result))
        except Exception as exc:  # handed to the UI thread, which shows it in the chat
            events.put(("error", exc))

    threading.Thread(target=work, name="fusionrec-ui-turn", daemon=True).start()
    patience = services.settings.api.turn_deadline_s * 2 + 60
    while True:
        try:
            kind, payload = events.get(timeout=patience)
        except queue.Empty:
            yield "error", TimeoutError(f"no answer after {patience:.0f} s; please try again")
            return
        yield kind, payload
        if kind in ("result", "error"):
            return


def reply_chunks(text: str, words: int = CHUNK_WORDS) -> Iterator[str]:
    """The reply growing a few words at a time (whitespace kept, so markdown escapes stay intact)."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    for end in range(words, len(pieces) + words, words):
        yield "".join(pieces[:end])


class ChatUI:
    """The event handlers, bound to the services (no module-level state)."""

    def __init__(self, services: Services, demo: bool):
        self.services = services
        self.demo = demo  # persona picker, no login (only when no API keys are configured)
        self.stores = services.recommender.stores
        self.currency = self.stores.dataset.currency
        self.personas = services.persona_ids(services.settings.ui.personas) if demo else []
        dataset = self.stores.dataset
        self.feedback_kinds = feedback_kinds(dataset.positive_kinds[0], dataset.interaction_verb)

    # --- who acts -------------------------------------------------------------------------------
    def acting_user(self, request: gr.Request | None, persona: str | None) -> str:
        """The logged-in user (the client's persona value is ignored), or in demo mode a demo persona."""
        if not self.demo:
            user = getattr(request, "username", None)
            if not user:
                raise NotAllowed("log in first")
            return str(user)
        if persona not in self.personas:
            raise NotAllowed("not a demo persona: pick a persona from the list")
        return str(persona)

    def persona_choices(self) -> list[tuple[str, str]]:
        names = self.stores.user_names
        return [(f"{uid} — {names[self.stores.user_idx(uid)]}", uid) for uid in self.personas]

    def default_persona(self) -> str:
        return DEFAULT_PERSONA if DEFAULT_PERSONA in self.personas else (self.personas[0] if self.personas else "")

    def profile(self, user_id: str) -> str:
        try:
            profile = self.services.agent.profile(user_id)
        except UnknownUser as exc:
            return notice_html(f"{exc}: pick a persona from the list")
        return profile_html(user_id, profile.name, [asdict(h) for h in profile.history], profile.friends,
                            self.currency)

    def my_profile(self, request: gr.Request) -> str:
        """The logged-in user's profile (shown when the page loads)."""
        try:
            return self.profile(self.acting_user(request, None))
        except NotAllowed as exc:
            return notice_html(str(exc))

    def select_persona(self, persona: str, request: gr.Request) -> tuple[Any, ...]:
        """Demo mode: act as a demo persona; show the profile and start a new conversation."""
        try:
            user = self.acting_user(request, persona)
        except NotAllowed as exc:
            return notice_html(str(exc)), [], NO_CARDS, {}, "", [], Conversation(user_id="")
        return self.profile(user), [], NO_CARDS, {}, "", [], Conversation(user_id=user)

    def new_conversation(self, persona: str, request: gr.Request) -> tuple[Any, ...]:
        try:
            user = self.acting_user(request, persona)
        except NotAllowed:
            user = ""
        return [], NO_CARDS, {}, "", [], Conversation(user_id=user)

    # --- one turn, streamed -------------------------------------------------------------------
    def chat(self, message: str, persona: str, conv: Conversation | None,
             request: gr.Request) -> Iterator[tuple[Any, ...]]:
        """Outputs: chatbot, cards, turn info, context, raw LLM calls, conversation."""
        skip = gr.skip()
        try:
            user = self.acting_user(request, persona)
        except NotAllowed as exc:
            conv = Conversation(user_id="")
            yield from self._failed(conv, exc)
            return
        if conv is None or conv.user_id != user:  # a persona switch always starts a new session
            conv = Conversation(user_id=user)
        # the user's own words are shown as typed text, never as markup
        shown = [{"role": "user", "content": safe(message)}] if message and message.strip() else []
        conv = replace(conv, messages=[*conv.messages, *shown])
        yield conv.messages, skip, skip, skip, skip, conv
        pending: tuple[int, str] | None = None
        for kind, payload in stream_turn(self.services, user, message or "", conv.session_id):
            if pending is not None:  # the previous status is over once anything else happens
                conv.messages[pending[0]] = status_message(pending[1], done=True)
                pending = None
            if kind == "intent":
                conv.messages.append(intent_message(payload))
            elif kind == "step":
                conv.messages.append(step_message(payload))
            elif kind == "status":
                conv.messages.append(status_message(str(payload)))
                pending = len(conv.messages) - 1, str(payload)
            elif kind == "error":
                yield from self._failed(conv, payload)
                return
            elif kind == "result":
                yield from self._answer(conv, payload)
                return
            yield conv.messages, skip, skip, skip, skip, conv

    def _answer(self, conv: Conversation, result: TurnResult) -> Iterator[tuple[Any, ...]]:
        skip = gr.skip()
        conv.session_id = result.session_id
        cards = cards_html(result.items, self.currency, self.stores.dataset.interaction_verb) if result.items else NO_CARDS
        context = result.context or "(no rerank prompt this turn: the LLM is off, or the turn needed no ranking)"
        chunks = list(reply_chunks(result.reply)) or [""]
        history, last = conv.messages, len(chunks) - 1
        for n, text in enumerate(chunks):
            conv.messages = [*history, {"role": "assistant", "content": text}]
            if n in (0, last):  # cards and the panel come with the first words, and again at the end so
                # that an API caller's final result is complete
                yield conv.messages, cards, turn_info(result), context, result.raw_llm, conv
            else:
                yield conv.messages, skip, skip, skip, skip, conv
            if n < last:
                time.sleep(CHUNK_PAUSE_S)

    def _failed(self, conv: Conversation, exc: BaseException) -> Iterator[tuple[Any, ...]]:
        skip = gr.skip()
        if isinstance(exc, SessionError):
            conv.session_id = None  # the next message starts a fresh session for this persona
            text = f"{exc} (a new conversation starts with your next message)"
        elif isinstance(exc, UnknownUser):
            text = f"{exc}: pick a persona from the list"
        elif isinstance(exc, (*USER_ERRORS, TimeoutError)):
            text = str(exc)
        else:
            log.error("turn failed", exc_info=exc)
            text = f"Something went wrong on our side ({exc.__class__.__name__}); please try again."
        conv.messages.append(error_message(text))
        yield conv.messages, skip, skip, skip, skip, conv


    # --- feedback on the last list ----------------------------------------------------------------
    def _last_list(self, user: str, conv: Conversation | None) -> tuple[list[str], list[dict[str, Any]]]:
        """The acting user's last list in this conversation and the turns so far (from the sessions store)."""
        if conv is None or conv.user_id != user or not conv.session_id:
            return [], []
        session = self.services.agent.sessions.open(user, conv.session_id)
        return list(session.state.last_list), session.history

    def list_choices(self, persona: str, conv: Conversation | None, request: gr.Request) -> Any:
        """The items of the last list, for the feedback picker."""
        try:
            items, _ = self._last_list(self.acting_user(request, persona), conv)
        except (NotAllowed, SessionError):
            items = []
        index, titles = self.stores.item_index, self.stores.titles
        choices = [(f"#{n} {titles[index[i]]}", i) for n, i in enumerate(items, start=1) if i in index]
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def feedback(self, kind: FeedbackKind, item_id: str | None, persona: str, conv: Conversation | None,
                 request: gr.Request) -> Iterator[tuple[Any, ...]]:
        """Record one event for the acting user, then ask for the last list again so the cards show it.
        Outputs: chatbot, cards, turn info, context, raw LLM calls, conversation, notice."""
        skip = gr.skip()
        try:
            user = self.acting_user(request, persona)
            items, history = self._last_list(user, conv)
            notice = record_feedback(self.services, user, items, item_id, kind.kind)
        except (NotAllowed, FeedbackRefused, SessionError) as exc:
            yield skip, skip, skip, skip, skip, skip, notice_html(str(exc))
            return
        shown = notice_html(notice)
        yield skip, skip, skip, skip, skip, skip, shown
        for out in self.chat(refresh_message(history), persona, conv, request):
            yield *out, shown

    def like(self, item_id: str | None, persona: str, conv: Conversation | None,
             request: gr.Request) -> Iterator[tuple[Any, ...]]:
        yield from self.feedback(self.feedback_kinds[0], item_id, persona, conv, request)

    def dislike(self, item_id: str | None, persona: str, conv: Conversation | None,
                request: gr.Request) -> Iterator[tuple[Any, ...]]:
        yield from self.feedback(self.feedback_kinds[1], item_id, persona, conv, request)

    def bought(self, item_id: str | None, persona: str, conv: Conversation | None,
               request: gr.Request) -> Iterator[tuple[Any, ...]]:
        yield from self.feedback(self.feedback_kinds[2], item_id, persona, conv, request)


def build_ui(services: Services, tabs: Sequence[tuple[str, Callable[[], None]]] = (),
             demo: bool = False) -> gr.Blocks:
    """The chat UI; each of ``tabs`` is (title, a function that builds the tab's controls), e.g. the prompt lab.
    ``demo``: a persona picker and no login; otherwise mount it with ``login(services)`` as its ``auth``."""
    handlers = ChatUI(services, demo)
    persona = handlers.default_persona()
    with gr.Blocks(title="fusionrec", analytics_enabled=False) as ui:
        conv = gr.State(Conversation(user_id=persona))
        gr.Markdown("# fusionrec\nA conversational recommender: your history, your friends and the catalog, "
                    "fused and explained.")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    # Without demo mode there is no picker, only a hidden placeholder for the same API: the
                    # handlers act as the logged-in user and ignore its value.
                    picker: gr.Dropdown | gr.Textbox = (
                        gr.Dropdown(handlers.persona_choices(), value=persona, label="Demo login: persona",
                                    elem_id="persona", filterable=True) if demo
                        else gr.Textbox(value="", visible=False, elem_id="persona"))
                    profile = gr.HTML(handlers.profile(persona) if demo else "", elem_id="profile",
                                      css_template=CARDS_CSS)
                    new_chat = gr.Button("New conversation", variant="secondary", size="sm")
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=520, sanitize_html=True,
                                         allow_tags=False, render_markdown=True, feedback_options=None,
                                         placeholder="Ask for something, e.g. *camping gear under $100*.")
                    with gr.Row():
                        box = gr.Textbox(placeholder="What are you looking for?", show_label=False, scale=5,
                                         elem_id="message", max_lines=4, autofocus=True,
                                         max_length=services.settings.api.max_message_chars)
                        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    gr.Examples(EXAMPLES, inputs=box, label="Try")
            cards = gr.HTML(NO_CARDS, elem_id="cards", css_template=CARDS_CSS, label="Recommendations")
            with gr.Row(elem_id="feedback"):
                # Any value is accepted here and checked against the last list by the handler.
                picked = gr.Dropdown([], value=None, label="Feedback on an item of the last list",
                                     elem_id="feedback-item", allow_custom_value=True, scale=4)
                buttons = [gr.Button(k.label, elem_id=f"feedback-{k.name}", size="sm", scale=1, min_width=80)
                           for k in handlers.feedback_kinds]
            feedback_notice = gr.HTML("", elem_id="feedback-notice")
            with gr.Accordion("Under the hood: fused context and raw LLM output (last turn)", open=False,
                              elem_id="debug"):
                info = gr.JSON(label="LLM path, blend weight, tokens, timings", elem_id="turn-info")
                context = gr.Code(label="Fused context (the rendered rerank prompt)", language=None,
                                  lines=12, max_lines=30, elem_id="context")
                raw = gr.JSON(label="Raw LLM calls (purpose, ok, latency, tokens, error, raw)", elem_id="raw-llm")
        for title, build_tab in tabs:
            with gr.Tab(title):
                build_tab()

        if demo:
            picker.change(handlers.select_persona, inputs=picker,
                          outputs=[profile, chatbot, cards, info, context, raw, conv], api_name="select_persona")
        else:
            ui.load(handlers.my_profile, outputs=profile, api_visibility="private")
        new_chat.click(handlers.new_conversation, inputs=picker, outputs=[chatbot, cards, info, context, raw, conv],
                       api_name="new_conversation")
        # The typed message moves to a hidden box and the visible one is locked while the turn streams (a
        # submit meanwhile would be dropped); the turn reads the hidden box, so API callers pass it as `message`.
        pending = gr.Textbox(visible=False)
        gr.on([box.submit, send.click], take_message, inputs=box, outputs=[pending, box, feedback_notice], queue=False,
              api_visibility="private").then(
            handlers.chat, inputs=[pending, picker, conv], outputs=[chatbot, cards, info, context, raw, conv],
            api_name="chat", show_progress="minimal").then(ready, outputs=box, queue=False, api_visibility="private")
        cards.change(handlers.list_choices, inputs=[picker, conv], outputs=picked, queue=False,
                     api_visibility="private")
        for kind, button, handler in zip(handlers.feedback_kinds, buttons,
                                         (handlers.like, handlers.dislike, handlers.bought), strict=True):
            button.click(handler, inputs=[picked, picker, conv],
                         outputs=[chatbot, cards, info, context, raw, conv, feedback_notice],
                         api_name=f"feedback_{kind.name}", show_progress="minimal")
    ui.queue(max_size=services.settings.api.gradio_queue_size, default_concurrency_limit=2)
    return ui


def login(services: Services) -> Callable[[str, str], bool]:
    """The UI's login check: the user id and an API key bound to it (the same keys as the APIs)."""
    return services.keys.check
