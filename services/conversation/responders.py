"""Who writes the bot's reply: an OpenAI-compatible server, or built-in rules when there is
no API key, so the product works with no account at all."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from services.conversation.domain import Conversation
from shared.bot import LLMRequest
from shared.errors import RetryLater
from shared.resilience import Upstream, UpstreamError, Upstreams

log = logging.getLogger("responder")


class Reply(NamedTuple):
    text: str
    responder: str  # who wrote it: recorded on BotReplied (a fallback says so)


@dataclass(frozen=True)
class Profile:
    """Who the bot is for this conversation: the number's persona and model (the
    environment's when the number has none), and the business whose LLM budget it spends."""

    business_id: str = ""
    persona: str = ""
    model: str = ""


class Responder(Protocol):
    name: str

    async def reply(self, conversation: Conversation, profile: Profile = Profile()) -> Reply:
        """The reply to the conversation's last customer turn."""
        ...

    async def complete(
        self, request: LLMRequest, conversation: Conversation, profile: Profile = Profile()
    ) -> str | None:
        """What the LLM answers a bot's request; None when there is no LLM or it failed
        (the bot then says its fallback)."""
        ...


_GREETINGS = ("hi", "hello", "hey", "ciao", "hola", "bonjour", "hallo", "salut", "olá")


class OfflineResponder:
    """Deterministic rules: greets, offers help, and acknowledges everything else."""

    name = "offline"

    async def reply(self, conversation: Conversation, profile: Profile = Profile()) -> Reply:
        return Reply(self.text(conversation), self.name)

    async def complete(
        self, request: LLMRequest, conversation: Conversation, profile: Profile = Profile()
    ) -> str | None:
        return None  # no LLM configured

    def text(self, conversation: Conversation) -> str:
        last = conversation.turns[-1].text if conversation.turns else ""
        name = conversation.customer_name.split(" ")[0] if conversation.customer_name else ""
        hello = f"Hi {name}!" if name else "Hi!"
        words = [w.strip("!?.,;:") for w in last.lower().split()]
        customer_turns = sum(1 for t in conversation.turns if t.role == "customer")
        if words and words[0] in _GREETINGS:
            return f"{hello} How can I help you today? Type 'help' to see what I can do."
        if "help" in words or "menu" in words:
            return (
                "I'm the offline assistant: I read every message and answer in order. "
                "Tell me what you need and a person will follow up."
            )
        if last.startswith("[location]"):
            return f"Thanks for sharing your location: {last[len('[location] ') :]}."
        if last.startswith("[order]"):
            return f"Thank you for your order: {last[len('[order] ') :]}. We'll confirm it shortly."
        if last.startswith("[shared contacts]"):
            return "Thanks, I received the contact details."
        media = _media_reply(last)
        if media:
            return media
        prefix = f"{hello} " if customer_turns == 1 else ""
        return f'{prefix}You said: "{last}" (message {customer_turns} of our chat).'


_MEDIA_LABELS = ("voice note", "audio", "image", "video", "document", "sticker")


def _media_reply(last: str) -> str:
    """A media turn as the conversation describes it (`[image] caption`, `[voice note]
    (transcription unavailable)`, ...): acknowledge it, and say so when it could not be read."""
    label = next((x for x in _MEDIA_LABELS if last.startswith(f"[{x}]")), "")
    if not label:
        return ""
    if "(the file could not be received" in last:
        return f"Sorry, I couldn't open the {label} you sent. Could you send it again?"
    if label in ("voice note", "audio") and last.endswith(")"):
        return (
            f"Thanks for your {label}. I can't listen to it right now: could you type your message?"
        )
    if label == "sticker":
        return "Nice sticker! How can I help you today?"
    return f"Thanks, I received your {label}. A person will take a look and get back to you."


class OpenAIResponder:
    """`POST {base}/chat/completions` with the persona and the recent history."""

    name = "openai"

    def __init__(
        self,
        upstream: Upstream | Upstreams,
        base_url: str,
        api_key: str,
        model: str,
        persona: str,
        history_turns: int,
        fallback: OfflineResponder | None = None,
    ) -> None:
        self.upstream = upstream
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.model = model
        self.persona = persona
        self.history_turns = history_turns
        self.fallback = fallback or OfflineResponder()

    def messages(
        self, conversation: Conversation, profile: Profile = Profile()
    ) -> list[dict[str, str]]:
        # The business's own messages are the assistant's side too: the bot sees them as said.
        history = [
            {"role": "user" if t.role == "customer" else "assistant", "content": t.text}
            for t in conversation.recent(self.history_turns)
        ]
        return [{"role": "system", "content": profile.persona or self.persona}, *history]

    def _upstream(self, profile: Profile) -> Upstream:
        # The LLM key's limits and failures are the account's: one breaker per business.
        if isinstance(self.upstream, Upstreams):
            return self.upstream(profile.business_id or "default")
        return self.upstream

    async def reply(self, conversation: Conversation, profile: Profile = Profile()) -> Reply:
        body = {
            "model": profile.model or self.model,
            "messages": self.messages(conversation, profile),
        }
        try:
            answer = await self._upstream(profile).request(
                "POST", self.url, json=body, headers=self.headers
            )
            return Reply(str(answer["choices"][0]["message"]["content"]).strip(), self.name)
        except UpstreamError as exc:
            if exc.transient:
                raise
            # A 4xx will not get better by retrying (bad key, context too long): the customer
            # still gets an answer, and the event records which responder wrote it.
            log.error(
                "LLM refused the request; using offline reply",
                extra={"fields": {"status": exc.status}},
            )
            return await self._fallback(conversation)
        except (KeyError, IndexError, TypeError) as exc:
            log.error(
                "LLM answer has no content; using offline reply",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return await self._fallback(conversation)

    async def complete(
        self, request: LLMRequest, conversation: Conversation, profile: Profile = Profile()
    ) -> str | None:
        messages = list(request.messages)
        if messages and messages[0].get("role") == "system":
            persona = profile.persona or self.persona
            # The definition's persona wins; without one, the number's (or the environment's).
            if persona and persona not in messages[0]["content"]:
                system = f"{persona}\n\n{messages[0]['content']}"
                messages[0] = {"role": "system", "content": system}
        if request.history:
            history = [
                {"role": "user" if t.role == "customer" else "assistant", "content": t.text}
                for t in conversation.recent(request.history)
            ]
            messages = [*messages[:1], *history, *messages[1:]]
        body = {
            "model": profile.model or self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        }
        try:
            answer = await self._upstream(profile).request(
                "POST", self.url, json=body, headers=self.headers
            )
            return str(answer["choices"][0]["message"]["content"]).strip()
        except (UpstreamError, RetryLater, KeyError, IndexError, TypeError) as exc:
            # The bot says its fallback rather than keep the customer waiting (a breaker
            # open included): a rule's text is an answer, an LLM outage is not the customer's.
            log.warning(
                "LLM answer unavailable; the bot falls back",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return None

    async def _fallback(self, conversation: Conversation) -> Reply:
        return Reply(self.fallback.text(conversation), f"{self.fallback.name}-fallback")
