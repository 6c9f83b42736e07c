"""The peer of `make bench`: the bot a Python developer would write with pywa (its async
client on FastAPI, under uvicorn), replying through the same fake LLM and Graph API as our
stack. Run in its own virtualenv (`tests/bench/peer/requirements.lock`), never ours:

    .venv-peer/bin/python tests/bench/peer/bot.py --port P --graph URL --openai URL \
        --secret S --token T --openai-key K

Nothing is tuned: pywa's, httpx's, openai's and uvicorn's documented defaults. The only
change is where the Graph API is: pywa always calls https://graph.facebook.com, so an httpx
transport (httpx's documented extension point) sends its requests to the fake instead. The
harness waits for `GET /healthz`.
"""

from __future__ import annotations

import argparse

import httpx
import uvicorn
from fastapi import FastAPI
from openai import AsyncOpenAI
from pywa_async import WhatsApp, filters, types

PHONE_ID = "100000000000001"


class ToFake(httpx.AsyncHTTPTransport):
    """Every request to the fake Graph API (same path, query and body)."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = httpx.URL(base)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.base.scheme, host=self.base.host, port=self.base.port
        )
        return await super().handle_async_request(request)


def build(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()
    llm = AsyncOpenAI(base_url=args.openai, api_key=args.openai_key)
    wa = WhatsApp(
        phone_id=PHONE_ID,
        token=args.token,
        session=httpx.AsyncClient(transport=ToFake(args.graph)),
        server=app,
        webhook_endpoint="/webhook",
        verify_token="bench",
        app_secret=args.secret,
    )

    @wa.on_message(filters.text)
    async def answer(_: WhatsApp, msg: types.Message) -> None:
        completion = await llm.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": msg.text}]
        )
        await msg.reply(completion.choices[0].message.content or "")

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--graph", "--openai", "--secret", "--token", "--openai-key"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # uvicorn's defaults: uvloop and httptools where installed (uvicorn[standard]), one worker.
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
