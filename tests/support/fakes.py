"""Real HTTP stand-ins for the WhatsApp Graph API and OpenAI, with fault injection.

The services under test are separate processes, so the fakes are real servers on loopback.
Each runs its own event loop in a background thread, which lets plain (sync) tests drive and
inspect them while services call them. All shared state is guarded by one lock per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

Predicate = Callable[["RecordedRequest"], bool]


@dataclass
class RecordedRequest:
    method: str
    path: str
    # Header names are lower-cased: HTTP names are case-insensitive, a plain dict is not.
    headers: dict[str, str]
    json: Any
    body: bytes
    received_at: float
    query: dict[str, str] = field(default_factory=dict)
    fault: bool = False


@dataclass
class Fault:
    """One canned failure. status=None means "answer normally, after delay" (a slow success)."""

    status: int | None = 500
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    match: Predicate | None = None
    # Close the connection without any response, like a crashed upstream or a reset.
    disconnect: bool = False

    def applies_to(self, rec: RecordedRequest) -> bool:
        return self.match is None or bool(self.match(rec))


def wait_for(
    pred: Callable[[], bool], timeout: float = 20, interval: float = 0.05, message: str = ""
) -> None:
    """Poll pred until it is true; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() >= deadline:
            what = message or getattr(pred, "__name__", repr(pred))
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def _bearer(rec: RecordedRequest) -> str | None:
    value = rec.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class FakeServer:
    """Base: recording, fault injection and the server thread. Subclasses implement handle()."""

    name = "fake"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._always: Fault | None = None
        # Added to every request before it is answered (set from tests).
        self.latency: float = 0.0
        self.url: str = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Handlers still sleeping in an injected delay: cancel rather than wait them out.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    async def _open(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A short shutdown timeout: a test that injected a 30 s delay must not stall teardown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    # --- faults --------------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is consumed by the next request it matches, in FIFO order."""
        with self._lock:
            self._faults.extend(faults)

    def fail_always(self, fault: Fault) -> None:
        """Answer every matching request with fault (after queued faults) until cleared."""
        with self._lock:
            self._always = fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._always = None

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def _take_fault(self, rec: RecordedRequest) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.applies_to(rec):
                    return self._faults.pop(i)
            if self._always is not None and self._always.applies_to(rec):
                return self._always
        return None

    # --- recording -----------------------------------------------------------------------------

    def requests_matching(self, pred: Predicate) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if pred(r)]

    def reset(self) -> None:
        """Forget requests, faults and per-API state (the server keeps running)."""
        with self._lock:
            self.requests.clear()
            self.clear_faults()
            self.latency = 0.0
            self._reset_state()

    def _reset_state(self) -> None:
        pass

    # --- dispatch ------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = jsonlib.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=parsed,
            body=body,
            received_at=time.monotonic(),
            query=dict(request.query),
        )
        fault = self._take_fault(rec)
        rec.fault = fault is not None and fault.status is not None
        with self._lock:
            self.requests.append(rec)
            latency = self.latency
        delay = latency + (fault.delay if fault else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.disconnect:
            rec.fault = True
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing can be sent on an aborted transport
        if fault is not None and fault.status is not None:
            if fault.json is None:
                return web.Response(status=fault.status, headers=fault.headers)
            return web.json_response(fault.json, status=fault.status, headers=fault.headers)
        with self._lock:
            return self.handle(rec)

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        """Answer a request that no fault claimed. Runs under the lock, in the server thread."""
        raise NotImplementedError


# --- WhatsApp Graph API --------------------------------------------------------------------------

_META_MESSAGES = {
    100: "(#100) Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    130429: "(#130429) Rate limit hit",
    131000: "(#131000) Something went wrong",
    131026: "(#131026) Message undeliverable",
    131047: (
        "(#131047) Re-engagement message: more than 24 hours have passed since the customer "
        "last replied to this number"
    ),
    131056: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
}


def meta_error_body(
    code: int, message: str | None = None, subcode: int | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message or _META_MESSAGES.get(code, f"(#{code}) Error"),
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": "fake Graph API error"},
        "fbtrace_id": "AFAKE" + uuid.uuid4().hex[:18],
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def meta_error(
    code: int,
    status: int = 400,
    message: str | None = None,
    *,
    subcode: int | None = None,
    match: Predicate | None = None,
    delay: float = 0.0,
    headers: dict[str, str] | None = None,
) -> Fault:
    """A Graph API error response as Meta sends it (most codes, even 130429, come as 400)."""
    return Fault(
        status=status,
        json=meta_error_body(code, message, subcode),
        headers=headers or {},
        delay=delay,
        match=match,
    )


def sends_to(customer: str) -> Predicate:
    """Fault match: a message send (not a mark-read) addressed to customer."""

    def pred(rec: RecordedRequest) -> bool:
        body = rec.json if isinstance(rec.json, dict) else {}
        return body.get("status") != "read" and _same_number(body.get("to"), customer)

    return pred


def _same_number(a: Any, b: Any) -> bool:
    # The API accepts "+15551234567" and "15551234567" for the same customer.
    return isinstance(a, str) and isinstance(b, str) and a.lstrip("+") == b.lstrip("+")


HELLO_WORLD = {
    "name": "hello_world",
    "language": "en_US",
    "category": "UTILITY",
    "status": "APPROVED",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
        {"type": "BODY", "text": "Welcome and congratulations!! This message demonstrates your"
         " ability to send a WhatsApp message notification from the Cloud API."},
        {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"},
    ],
}  # fmt: skip
TEMPLATE_CREATIONS_PER_HOUR = 100  # per WABA (platform-facts, part 2)


class FakeGraphAPI(FakeServer):
    """POST /{phone_number_id}/messages (optionally /vNN.N/...): sends and mark-reads.
    GET and POST /{waba_id}/message_templates: every WABA has Meta's `hello_world` unless a
    test sets `templates[waba]`; the list pages by `limit` and `after` as Meta does, and a
    WABA's 101st creation within an hour is refused (code 80008, as Meta's cap)."""

    name = "fake-graph"
    _MESSAGES = re.compile(r"^/(?:v\d+(?:\.\d+)?/)?(?P<pid>[^/]+)/messages/?$")
    _TEMPLATES = re.compile(r"^/(?:v\d+(?:\.\d+)?/)?(?P<waba>[0-9]+)/message_templates/?$")

    def __init__(self, access_token: str = "test-token") -> None:
        super().__init__()
        self.access_token = access_token
        # Numbers with a token of their own (a business's number): only that one is good.
        self.tokens: dict[str, str] = {}
        # A number's earlier tokens, still good (Meta keeps a replaced token valid until it
        # is revoked): the services learn of a new token a moment apart.
        self.former_tokens: dict[str, set[str]] = {}
        self.sent: list[dict[str, Any]] = []
        self.read_marks: list[dict[str, Any]] = []
        self.templates: dict[str, list[dict[str, Any]]] = {}  # waba_id -> Meta's objects
        self.created: dict[str, list[float]] = {}  # waba_id -> when templates were created
        # Numbers' WABAs, when a test says: a template send is then checked against them.
        self.wabas: dict[str, str] = {}

    def _reset_state(self) -> None:
        self.sent.clear()
        self.read_marks.clear()
        self.templates.clear()
        self.created.clear()
        self.wabas.clear()

    def templates_of(self, waba_id: str) -> list[dict[str, Any]]:
        with self._lock:
            if waba_id not in self.templates:
                self.templates[waba_id] = [
                    {**HELLO_WORLD, "id": str(10**15 + int(waba_id) % 10**9)}
                ]
            return self.templates[waba_id]

    def add_template(self, waba_id: str, **fields: Any) -> dict[str, Any]:
        """A template as Meta lists it (id given unless set), APPROVED unless set."""
        template = {
            "id": str(uuid.uuid4().int % 10**16),
            "status": "APPROVED",
            "category": "MARKETING",
            "language": "en_US",
            "parameter_format": "POSITIONAL",
            **fields,
        }
        with self._lock:
            self.templates_of(waba_id).append(template)
        return template

    def replace_token(self, number: str, token: str) -> None:
        """The number's token is `token` now; the one it had stays good."""
        if number in self.tokens:
            self.former_tokens.setdefault(number, set()).add(self.tokens[number])
        self.tokens[number] = token

    def tokens_of(self, number: str) -> set[str]:
        return {self.tokens.get(number, self.access_token), *self.former_tokens.get(number, ())}

    def _token_ok(self, rec: RecordedRequest) -> bool:
        token = _bearer(rec)
        return (
            token == self.access_token
            or token in self.tokens.values()
            or any(token in former for former in self.former_tokens.values())
        )

    def _templates(self, rec: RecordedRequest, waba_id: str) -> web.StreamResponse:
        if not self._token_ok(rec):
            return web.json_response(meta_error_body(190), status=401)
        if rec.method == "GET":
            listed = self.templates_of(waba_id)
            if rec.query.get("status"):
                listed = [t for t in listed if t.get("status") == rec.query["status"]]
            limit = int(rec.query.get("limit") or 25)
            start = int(rec.query.get("after") or 0)
            page = listed[start : start + limit]
            paging: dict[str, Any] = {
                "cursors": {"before": str(start), "after": str(start + limit)}
            }
            if start + limit < len(listed):
                paging["next"] = f"{self.url}{rec.path}?limit={limit}&after={start + limit}"
            return web.json_response({"data": page, "paging": paging})
        if rec.method != "POST" or not isinstance(rec.json, dict):
            return web.json_response(meta_error_body(100, "Unsupported request."), status=400)
        now = time.monotonic()
        recent = [t for t in self.created.get(waba_id, []) if now - t < 3600]
        if len(recent) >= TEMPLATE_CREATIONS_PER_HOUR:
            return web.json_response(
                meta_error_body(80008, "(#80008) Too many template creations this hour"),
                status=400,
            )
        body = rec.json
        missing = [k for k in ("name", "language", "category", "components") if not body.get(k)]
        if missing:
            return web.json_response(
                meta_error_body(100, f"The parameter {missing[0]} is required."), status=400
            )
        self.created[waba_id] = [*recent, now]
        template = self.add_template(
            waba_id,
            name=body["name"],
            language=body["language"],
            category=body["category"],
            parameter_format=body.get("parameter_format", "POSITIONAL"),
            components=body["components"],
            status="PENDING",
        )
        return web.json_response(
            {"id": template["id"], "status": "PENDING", "category": body["category"]}
        )

    def _template_refusal(self, phone_number_id: str, body: dict[str, Any]) -> Any:
        """132001 for a template the number's WABA has not approved (when the test named
        the WABA): what Meta answers."""
        waba_id = self.wabas.get(phone_number_id)
        template = body.get("template") if isinstance(body.get("template"), dict) else {}
        if body.get("type") != "template" or waba_id is None:
            return None
        language = (template.get("language") or {}).get("code")
        for t in self.templates_of(waba_id):
            same = t.get("name") == template.get("name") and t.get("language") == language
            if same and t.get("status") == "APPROVED":
                return None
        return web.json_response(
            meta_error_body(132001, "(#132001) Template name does not exist in the translation"),
            status=404,
        )

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        t = self._TEMPLATES.match(rec.path)
        if t is not None:
            return self._templates(rec, t.group("waba"))
        m = self._MESSAGES.match(rec.path)
        if m is None or rec.method != "POST":
            return web.json_response(
                meta_error_body(100, f"Unsupported {rec.method.lower()} request."), status=400
            )
        if _bearer(rec) not in self.tokens_of(m.group("pid")):
            return web.json_response(meta_error_body(190), status=401)
        body = rec.json
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return web.json_response(
                meta_error_body(100, "The parameter messaging_product is required."), status=400
            )
        phone_number_id = m.group("pid")
        if body.get("status") == "read":
            if not body.get("message_id"):
                return web.json_response(
                    meta_error_body(100, "The parameter message_id is required."), status=400
                )
            self.read_marks.append(
                {
                    "phone_number_id": phone_number_id,
                    "message_id": body["message_id"],
                    "body": body,
                    "received_at": rec.received_at,
                }
            )
            return web.json_response({"success": True})
        # `recipient`: a business-scoped user id, for a customer who hides their number.
        to = body.get("to") or body.get("recipient")
        if not isinstance(to, str) or not to or ("to" in body and "recipient" in body):
            return web.json_response(
                meta_error_body(100, "The parameter to is required."), status=400
            )
        refused = self._template_refusal(phone_number_id, body)
        if refused is not None:
            return refused
        # Globally unique: the database is shared by a test session and wamids are event keys.
        wamid = f"wamid.FAKE{uuid.uuid4().hex}"
        self.sent.append(
            {
                "phone_number_id": phone_number_id,
                "to": to,
                "addressed_by": "to" if "to" in body else "recipient",
                "token": _bearer(rec),
                "body": body,
                "wamid": wamid,
                "received_at": rec.received_at,
            }
        )
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": wamid}],
            }
        )

    def sent_to(self, customer: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.sent if _same_number(s["to"], customer)]

    def texts_to(self, customer: str) -> list[str]:
        """Text bodies sent to customer, in arrival order."""
        return [
            s["body"]["text"]["body"]
            for s in self.sent_to(customer)
            if s["body"].get("type", "text") == "text" and isinstance(s["body"].get("text"), dict)
        ]

    def read_message_ids(self) -> list[str]:
        with self._lock:
            return [r["message_id"] for r in self.read_marks]


# --- OpenAI ----------------------------------------------------------------------------------


def openai_error(
    status: int = 500,
    message: str = "The server had an error while processing your request.",
    type_: str = "server_error",
    code: str | None = None,
    *,
    match: Predicate | None = None,
    delay: float = 0.0,
    headers: dict[str, str] | None = None,
) -> Fault:
    """An OpenAI-shaped error; e.g. openai_error(429, "Rate limit reached", "requests")."""
    return Fault(
        status=status,
        json={"error": {"message": message, "type": type_, "param": None, "code": code}},
        headers=headers or {},
        delay=delay,
        match=match,
    )


def _text_of(content: Any) -> str:
    # Content is a string, or a list of parts ({"type": "text", "text": ...}) for multimodal.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def echo_reply(request: dict[str, Any]) -> str:
    """Default reply: "echo: <last user message>", so tests can see order and history."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return f"echo: {_text_of(message.get('content'))}"
    return "echo: "


class FakeOpenAI(FakeServer):
    """POST /chat/completions (optionally /v1/chat/completions)."""

    name = "fake-openai"
    _COMPLETIONS = re.compile(r"^(?:/v1)?/chat/completions/?$")

    def __init__(
        self, api_key: str = "test-key", reply_fn: Callable[[dict[str, Any]], str] | None = None
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.reply_fn: Callable[[dict[str, Any]], str] = reply_fn or echo_reply
        # Full request bodies of the completions answered successfully.
        self.completions: list[dict[str, Any]] = []

    def _reset_state(self) -> None:
        self.completions.clear()
        self.reply_fn = echo_reply

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        if self._COMPLETIONS.match(rec.path) is None or rec.method != "POST":
            return web.json_response(
                {"error": {"message": "Not found", "type": "invalid_request_error"}}, status=404
            )
        if _bearer(rec) != self.api_key:
            return web.json_response(
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status=401,
            )
        body = rec.json
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response(
                {
                    "error": {
                        "message": "'messages' is a required property",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": None,
                    }
                },
                status=400,
            )
        reply = self.reply_fn(body)
        self.completions.append(body)
        prompt_tokens = sum(
            len(_text_of(m.get("content")).split()) for m in body["messages"] if isinstance(m, dict)
        )
        completion_tokens = len(reply.split())
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "gpt-4o-mini"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def user_messages(self) -> list[str]:
        """The last user message of each completion request, in arrival order."""
        with self._lock:
            return [
                _text_of(m.get("content"))
                for body in self.completions
                for m in body["messages"][-1:]
                if isinstance(m, dict) and m.get("role") == "user"
            ]


def dedup_deps(store: Any) -> Any:
    """Dedup's dependencies over `store`, with the directory the environment alone makes
    (the default business answers every number): what a stack with no setup runs."""
    from services.dedup.handlers import deps_for
    from shared.config import Settings
    from shared.directory import Directory

    return deps_for(store, Directory(Settings(), None))
