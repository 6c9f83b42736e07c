"""Speech to text (OpenAI-compatible `/audio/transcriptions`) and text to speech (ElevenLabs)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import aiohttp

from services.media import calls
from shared.resilience import Upstream, UpstreamError


class Transcription(NamedTuple):
    text: str
    transcriber: str  # "openai", or "unavailable" (no API key configured)
    model: str
    available: bool


class Transcriber(Protocol):
    async def transcribe(self, path: Path, mime_type: str, filename: str) -> Transcription: ...


class UnavailableTranscriber:
    """No OPENAI_API_KEY: the voice note is kept and the conversation is told there is no
    transcript, so the bot can still answer (and ask the customer to type)."""

    async def transcribe(self, path: Path, mime_type: str, filename: str) -> Transcription:
        return Transcription("", "unavailable", "", False)


class OpenAITranscriber:
    """`POST {base}/audio/transcriptions`, multipart `file` and `model`."""

    def __init__(self, upstream: Upstream, base_url: str, api_key: str, model: str) -> None:
        self.upstream = upstream
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.model = model

    async def transcribe(self, path: Path, mime_type: str, filename: str) -> Transcription:
        async def post(session: aiohttp.ClientSession) -> str:
            # aiohttp reads the file in its executor while sending; opening it is instant.
            with open(path, "rb") as fh:  # noqa: ASYNC230
                form = aiohttp.FormData()
                form.add_field("model", self.model)
                form.add_field("response_format", "json")
                form.add_field("file", fh, filename=filename, content_type=mime_type or "audio/ogg")
                async with session.post(
                    self.url, data=form, headers=self.headers, timeout=self.upstream.timeout
                ) as resp:
                    await calls.raise_for_status(self.upstream.name, resp)
                    body = await resp.json(content_type=None)
            if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                raise UpstreamError(self.upstream.name, 200, body, transient=False)
            return str(body["text"]).strip()

        text = await calls.call(self.upstream, post)
        return Transcription(text, "openai", self.model, True)


class ElevenLabsSpeech:
    """`POST {base}/v1/text-to-speech/{voice_id}?output_format=...` with `xi-api-key`."""

    def __init__(
        self,
        upstream: Upstream,
        base_url: str,
        api_key: str,
        voice_id: str,
        model_id: str,
        output_format: str,
    ) -> None:
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.voice_id = voice_id
        self.headers = {"xi-api-key": api_key}
        self.model_id = model_id
        self.output_format = output_format

    async def synthesize(self, text: str, voice_id: str = "") -> bytes:
        """`voice_id`: the number's own voice; the configured one when empty."""
        url = f"{self.base_url}/v1/text-to-speech/{voice_id or self.voice_id}"

        async def post(session: aiohttp.ClientSession) -> bytes:
            async with session.post(
                url,
                params={"output_format": self.output_format},
                json={"text": text, "model_id": self.model_id},
                headers=self.headers,
                timeout=self.upstream.timeout,
            ) as resp:
                await calls.raise_for_status(self.upstream.name, resp)
                return await resp.read()

        return await calls.call(self.upstream, post)
