"""Firefox for the console's browser tests, driven through WebDriver BiDi, the W3C protocol
Firefox speaks itself (`--remote-debugging-port`): playwright's Firefox needs its own
patched build, which is downloaded (never, here), and its BiDi mode asks Firefox ESR for
commands it does not have yet. This client is the few commands the tests need: navigate,
evaluate, real pointer clicks and key presses (`input.performActions`), and the prompts a
page opened (an `alert` must never come from customers' markup)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox") or ""
# Preferences for a quiet, test-only profile: no first-run pages, updates or telemetry.
PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.aboutwelcome.enabled": False,
    "intl.accept_languages": "en-US, en",
}


class BrowserError(AssertionError):
    """A command Firefox refused, or a wait that ran out."""


class Firefox:
    def __init__(self, executable: str = FIREFOX) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="wa-firefox-"))
        (self.profile / "user.js").write_text(
            "".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items())
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-remote", "--profile", str(self.profile),
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.process.stdout:
            if "WebDriver BiDi listening" in line:
                break
            if time.monotonic() > deadline:
                raise BrowserError("Firefox did not start its WebDriver BiDi server")
        self.prompts: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._next = 0
        self._session = self._loop.run_until_complete(self._open(port))
        self.call("session.new", capabilities={})
        self.call("session.subscribe", events=["browsingContext.userPromptOpened"])
        tree = self.call("browsingContext.getTree")
        self.context = tree["contexts"][0]["context"]
        self.call("browsingContext.setViewport", context=self.context,
                  viewport={"width": 1200, "height": 800})  # fmt: skip

    async def _open(self, port: int) -> aiohttp.ClientWebSocketResponse:
        self._http = aiohttp.ClientSession()
        return await self._http.ws_connect(f"ws://127.0.0.1:{port}/session", max_msg_size=0)

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        mine = self._next
        await self._session.send_str(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads((await self._session.receive(timeout=60)).data)
            if message.get("method") == "browsingContext.userPromptOpened":
                self.prompts.append(message["params"].get("message", ""))
                continue
            if message.get("id") != mine:
                continue
            if message.get("type") == "error":
                raise BrowserError(f"{method}: {message.get('error')}: {message.get('message')}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self._loop.run_until_complete(self._call(method, params))

    # --- what the tests do -----------------------------------------------------------------

    def goto(self, url: str) -> None:
        self.call("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        answer = self.call(
            "script.evaluate",
            expression=expression,
            target={"context": self.context},
            awaitPromise=True,
            serializationOptions={"maxDomDepth": 0},
        )
        if answer.get("type") == "exception":
            details = answer.get("exceptionDetails", {})
            raise BrowserError(f"{expression}: {details.get('text')}")
        return _value(answer.get("result", {}))

    def url(self) -> str:
        return str(self.eval("window.location.href"))

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll until the expression is truthy (a page that navigates meanwhile is asked again)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
                if value:
                    return value
            except BrowserError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            time.sleep(0.1)

    def click(self, selector: str) -> None:
        """A real click at the middle of the element (scrolled into view first)."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return r.width > 0 ? [Math.round(r.x + r.width / 2), Math.round(r.y + r.height / 2)]"
            " : null; })()"
        )
        x, y = box
        self.call(
            "input.performActions",
            context=self.context,
            actions=[{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                      "actions": [{"type": "pointerMove", "x": x, "y": y},
                                  {"type": "pointerDown", "button": 0},
                                  {"type": "pointerUp", "button": 0}]}],
        )  # fmt: skip

    def type(self, text: str) -> None:
        """Key presses into whatever has the focus ("\\ue007" is Enter)."""
        keys: list[dict[str, str]] = []
        for char in text:
            keys += [{"type": "keyDown", "value": char}, {"type": "keyUp", "value": char}]
        self.call(
            "input.performActions",
            context=self.context,
            actions=[{"type": "key", "id": "keyboard", "actions": keys}],
        )

    def fill(self, selector: str, text: str) -> None:
        self.click(selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).value = ''")
        self.type(text)

    def screenshot(self, path: Path) -> None:
        import base64

        shot = self.call("browsingContext.captureScreenshot", context=self.context)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("browser.close")
        except Exception:  # already gone: the process is stopped below
            pass
        self._loop.run_until_complete(self._http.close())
        self._loop.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def _value(remote: dict[str, Any]) -> Any:
    """A BiDi remote value as Python (primitives, arrays and objects)."""
    kind = remote.get("type")
    if kind in ("string", "number", "boolean"):
        return remote.get("value")
    if kind in ("null", "undefined"):
        return None
    if kind == "array":
        return [_value(v) for v in remote.get("value", [])]
    if kind == "object":
        return {k if isinstance(k, str) else _value(k): _value(v)
                for k, v in remote.get("value", [])}  # fmt: skip
    return remote
