"""The operator console at `/console/` on the api's port: the sign-in page, sign-out, the
inbox's shell and its two static files. Everything the inbox does afterwards goes through
the public `/v1` API with the session cookie (auth.py), so the console can do exactly what
the user's role may do there, and nothing the server does not check.

Sessions: a random cookie (`console_session`, HttpOnly, SameSite=Strict, Secure behind
https), kept as its hash; writes need the session's CSRF token in `X-CSRF-Token`, the
sign-out form in a field. The sign-in form carries its own double-submit token, so another
site cannot sign a visitor in as someone else; failed sign-ins are limited per address and
per email."""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from services.api import passwords, users
from services.api.auth import SESSION_COOKIE, find_session
from services.api.console import analytics_page, campaigns_page, i18n, live, pages, settings_page
from services.api.console.failures import WINDOW, Failures
from services.api.routes import Deps

STATIC = Path(__file__).parent / "static"
LOGIN_COOKIE = "console_login"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FILES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "common.js": "text/javascript",
    "templates.js": "text/javascript",
    "contacts.js": "text/javascript",
    "bot.js": "text/javascript",
    "analytics.js": "text/javascript",
    "campaigns.js": "text/javascript",
    "settings.js": "text/javascript",
}


async def _form(request: web.Request) -> dict[str, str]:
    """A urlencoded form's fields (the first of each name). Anything else, or a body that
    cannot be read or decoded, is an empty form: refused by the checks that follow, never a
    500."""
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        raw = await request.read()
        text = raw.decode("utf-8")
        fields = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=20)
    except (web.HTTPException, web.RequestPayloadError, ConnectionError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if "\x00" not in values[0]}


def _html(text: str, status: int = 200) -> web.Response:
    response = web.Response(status=status, text=text, content_type="text/html")
    response.headers["Content-Security-Policy"] = pages.CSP
    return response


def _redirect(location: str, status: int = 303) -> web.Response:
    """A redirect answered, not raised (the edge turns raised HTTP errors into JSON)."""
    return web.Response(status=status, headers={"Location": location})


def _back(form: dict[str, str]) -> str:
    """Where the language form sends the user back to: the console page it was on (one of
    the pages, never any other address: the API sends no Referer), else the inbox."""
    given = form.get("back", "")
    return given if given in {href for _, _, href in pages.PAGES} else "/console/"


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        max_age=users.SESSION_HOURS * 3600,
    )


def install(app: web.Application, deps: Deps) -> None:
    failures = Failures(deps.pool)

    def viewer(found: Any) -> pages.Viewer:
        return pages.Viewer(
            found["user_id"],
            found["name"],
            found["email"],
            found["role"],
            found["csrf_token"],
            found["language"],
        )

    def page(render: Callable[[pages.Viewer], str]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            found = await find_session(deps.pool, request.cookies.get(SESSION_COOKIE, ""))
            if found is None:
                return _redirect("/console/sign-in")
            return _html(render(viewer(found)))

        return handle

    def visitor_language(request: web.Request) -> str:
        return i18n.best(request.headers.get("Accept-Language", ""))

    async def sign_in_page(request: web.Request) -> web.StreamResponse:
        token = secrets.token_urlsafe(24)
        response = _html(pages.sign_in(token, lang=visitor_language(request)))
        _set_cookie(response, request, LOGIN_COOKIE, token)
        return response

    async def sign_in(request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        email = form.get("email", "")[:254].strip().lower()
        password = form.get("password", "")[: passwords.MAX_LENGTH]
        given = form.get("login_token", "")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        again = secrets.token_urlsafe(24)
        lang = visitor_language(request)

        def refused(message: str, status: int) -> web.Response:
            response = _html(pages.sign_in(again, i18n.t(lang, message), email, lang), status)
            _set_cookie(response, request, LOGIN_COOKIE, again)
            return response

        if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
            return refused("The form expired: sign in again.", 403)
        address = request.remote or "?"
        keys = (f"ip:{address}", f"email:{email}")
        attempt = await failures.attempt(*keys)
        if attempt.blocked:
            response = refused("Too many failed sign-ins: wait a few minutes.", 429)
            response.headers["Retry-After"] = str(int(WINDOW))
            return response
        made = await users.sign_in(deps.pool, email, password) if email and password else None
        if made is None:
            return refused("Wrong email or password.", 401)  # the attempt stays: a failure
        await attempt.forget()
        value, _ = made
        response = _redirect("/console/")
        _set_cookie(response, request, SESSION_COOKIE, value)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def sign_out(request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        value = request.cookies.get(SESSION_COOKIE, "")
        found = await find_session(deps.pool, value)
        if found is not None:
            given = form.get("csrf", "")
            if not secrets.compare_digest(given.encode(), found["csrf_token"].encode()):
                lang = found["language"]
                refusal = i18n.t(lang, "Sign-out refused.")
                return _html(pages.sign_in(secrets.token_urlsafe(24), refusal, lang=lang), 403)
            await users.sign_out(deps.pool, value, everywhere=form.get("everywhere") == "1")
        response = _redirect("/console/sign-in")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def language(request: web.Request) -> web.StreamResponse:
        """The signed-in user's choice of language (the header's form), kept with the user:
        every page and every session of theirs shows it from then on."""
        form = await _form(request)
        found = await find_session(deps.pool, request.cookies.get(SESSION_COOKIE, ""))
        if found is None:
            return _redirect("/console/sign-in")
        given = form.get("csrf", "")
        if not secrets.compare_digest(given.encode(), found["csrf_token"].encode()):
            return web.Response(status=403, text="the form expired: reload the page")
        chosen = form.get("language", "")
        if chosen not in i18n.LANGUAGES:
            return web.Response(status=422, text=f"language: one of {', '.join(i18n.LANGUAGES)}")
        await deps.pool.execute(
            "UPDATE api_users SET language = $2 WHERE user_id = $1", found["user_id"], chosen
        )
        return _redirect(_back(form))

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in FILES:
            return web.Response(status=404, text="no such file")
        response = web.Response(
            body=(STATIC / name).read_bytes(), content_type=FILES[name], charset="utf-8"
        )
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def colleagues(request: web.Request) -> web.StreamResponse:
        """Whom a conversation can be assigned to: the user's business's people, by name
        (the console's own read: `/v1/users` is for admins and shows emails)."""
        found = await find_session(deps.pool, request.cookies.get(SESSION_COOKIE, ""))
        if found is None:
            return web.json_response({"error": {"code": "unauthorized"}}, status=401)
        rows = await deps.pool.fetch(
            "SELECT user_id, name, email, role FROM api_users WHERE business_id = $1"
            " AND role <> 'viewer' ORDER BY lower(COALESCE(NULLIF(name, ''), email)), user_id",
            found["business_id"],
        )
        people = [{"id": r["user_id"], "name": r["name"] or r["email"]} for r in rows]
        response = web.json_response({"data": people})
        response.headers["Cache-Control"] = "no-store"
        return response

    async def to_console(_: web.Request) -> web.StreamResponse:
        return _redirect("/console/", 308)

    app.router.add_get("/console", to_console)
    app.router.add_get("/console/", page(pages.inbox))
    app.router.add_get("/console/contacts", page(pages.contacts))
    app.router.add_get("/console/bot", page(pages.bot))
    app.router.add_get("/console/analytics", page(analytics_page.analytics))
    app.router.add_get("/console/campaigns", page(campaigns_page.campaigns))
    app.router.add_get("/console/settings", page(settings_page.settings))
    app.router.add_get("/console/sign-in", sign_in_page)
    app.router.add_post("/console/sign-in", sign_in)
    app.router.add_post("/console/sign-out", sign_out)
    app.router.add_post("/console/language", language)
    app.router.add_get("/console/static/{name}", static)
    app.router.add_get("/console/colleagues", colleagues)
    changes = live.Changes(deps.pool)
    app.on_shutdown.append(changes.close)
    app.router.add_get("/console/events", live.handler(deps.pool, changes))
