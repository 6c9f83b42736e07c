"""The console's HTML: the sign-in page and the shell of the inbox, rendered on the server.
Everything shown is escaped here (names, emails, errors); what the inbox shows later
(customers' names and words) is set by app.js as text, never as HTML."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from services.api.console.i18n import LANGUAGES, script_block
from services.api.console.i18n import t as translate

# No inline script or style anywhere: the policy allows the console's own files only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
    " base-uri 'none'"
)


@dataclass(frozen=True)
class Viewer:
    """Who a page is rendered for: the signed-in user, their session's CSRF token and the
    language they chose."""

    user_id: str
    name: str
    email: str
    role: str
    csrf: str
    lang: str = "en"

    def t(self, text: str, **values: object) -> str:
        """`text` in the viewer's language, escaped for HTML."""
        return escape(translate(self.lang, text, **values))


def _page(lang: str, title: str, body: str, body_attrs: str = "") -> str:
    return (
        "<!doctype html>\n"
        f'<html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/console/static/app.css">'
        f"</head><body{body_attrs}>{script_block(lang)}{body}</body></html>\n"
    )


def sign_in(login_token: str, error: str = "", email: str = "", lang: str = "en") -> str:
    """The sign-in form, in the visitor's browser's language; `error` is already translated."""

    def t(text: str) -> str:
        return escape(translate(lang, text))

    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _page(
        lang,
        translate(lang, "Sign in") + " · WhatsApp console",
        f'<main class="sign-in"><h1>{t("Sign in")}</h1>'
        f"{problem}"
        '<form method="post" action="/console/sign-in">'
        f'<input type="hidden" name="login_token" value="{escape(login_token)}">'
        f'<label for="email">{t("Email")}</label>'
        f'<input id="email" name="email" type="email" autocomplete="username" required'
        f' value="{escape(email)}" autofocus>'
        f'<label for="password">{t("Password")}</label>'
        '<input id="password" name="password" type="password"'
        ' autocomplete="current-password" required>'
        f'<button type="submit">{t("Sign in")}</button>'
        "</form></main>",
    )


# (key, label, path, the roles that see it in the navigation)
PAGES: list[tuple[str, str, str]] = [
    ("inbox", "Inbox", "/console/"),
    ("contacts", "Contacts", "/console/contacts"),
    ("bot", "Bot", "/console/bot"),
    ("campaigns", "Campaigns", "/console/campaigns"),
    ("analytics", "Analytics", "/console/analytics"),
    ("settings", "Settings", "/console/settings"),
]


def _header(v: Viewer, title: str, current: str) -> str:
    """The pages' top bar: the page's name, the navigation, who is signed in, their
    language, sign-out."""
    links = "".join(
        f'<a href="{href}"' + (' aria-current="page"' if key == current else "") + f">"
        f"{v.t(label)}</a>"
        for key, label, href in PAGES
    )
    here = next((href for key, _, href in PAGES if key == current), "/console/")
    languages = "".join(
        f'<option value="{code}"' + (" selected" if code == v.lang else "") + f">{label}</option>"
        for code, label in LANGUAGES.items()
    )
    return (
        f'<header class="top"><h1>{v.t(title)}</h1>'
        f'<nav class="pages" aria-label="{v.t("Pages")}">{links}</nav>'
        f'<span class="me">{escape(v.name or v.email)}'
        f' <span class="role">({v.t(v.role)})</span></span>'
        '<form method="post" action="/console/language" class="language">'
        f'<input type="hidden" name="csrf" value="{escape(v.csrf)}">'
        f'<input type="hidden" name="back" value="{escape(here)}">'
        f'<label for="language">{v.t("Language")}</label>'
        f'<select id="language" name="language" data-testid="language">{languages}</select>'
        f'<button type="submit" id="language-save">{v.t("Change")}</button></form>'
        '<form method="post" action="/console/sign-out">'
        f'<input type="hidden" name="csrf" value="{escape(v.csrf)}">'
        f'<button type="submit">{v.t("Sign out")}</button></form>'
        '<form method="post" action="/console/sign-out">'
        f'<input type="hidden" name="csrf" value="{escape(v.csrf)}">'
        '<input type="hidden" name="everywhere" value="1">'
        f'<button type="submit">{v.t("Sign out everywhere")}</button></form>'
        "</header>"
    )


def _attrs(v: Viewer) -> str:
    return (
        f' data-user-id="{escape(v.user_id)}" data-role="{escape(v.role)}"'
        f' data-csrf="{escape(v.csrf)}" data-lang="{escape(v.lang)}"'
    )


def _scripts(*names: str) -> str:
    return "".join(
        f'<script src="/console/static/{name}"></script>' for name in ("common.js", *names)
    )


def contacts(v: Viewer) -> str:
    t = v.t
    return _page(
        v.lang,
        translate(v.lang, "Contacts") + " · WhatsApp console",
        _header(v, "Contacts", "contacts") + '<div class="layout">'
        f'<nav class="inbox" aria-label="{t("Contacts")}">'
        f'<label for="contact-search">{t("Search")}</label>'
        '<input id="contact-search" type="search" autocomplete="off"'
        f' placeholder="{t("name or number")}">'
        f'<label for="contact-tag">{t("Tag")}</label>'
        '<input id="contact-tag" type="text" autocomplete="off">'
        f'<ul id="contact-list"></ul><p id="contacts-empty" class="muted">{t("No contacts.")}</p>'
        '<form id="contact-import" class="import">'
        '<label for="import-file">'
        + t(
            "Import contacts from CSV (columns: wa_id, name, tags separated by ;,"
            " any other column an attribute)"
        )
        + "</label>"
        '<input id="import-file" type="file" accept=".csv,text/csv" data-testid="import-file">'
        f'<button type="submit" id="import-send">{t("Import")}</button>'
        '<ul id="import-result" aria-live="polite"></ul></form>'
        "</nav>"
        '<section class="conversation contact" id="contact-detail" hidden aria-live="polite">'
        '<div class="bar"><h2 id="contact-name"></h2>'
        '<span id="contact-number" class="muted"></span></div>'
        '<form id="contact-form" class="contact-form">'
        f'<label for="contact-tags">{t("Tags (separated by commas)")}</label>'
        '<input id="contact-tags" type="text" data-testid="contact-tags">'
        f'<label for="contact-attributes">{t("Attributes (one name=value a line)")}</label>'
        '<textarea id="contact-attributes" rows="4" data-testid="contact-attributes"></textarea>'
        '<label class="check"><input type="checkbox" id="contact-opt-out"'
        f' data-testid="contact-opt-out"> {t("Opted out of marketing")}</label>'
        f'<button type="submit" id="contact-save" data-testid="contact-save">{t("Save")}</button>'
        '<p id="contact-save-status" role="status"></p></form>'
        f"<h3>{t('Notes')}</h3>"
        '<form id="note-form" class="note-form">'
        f'<label for="note-text">{t("A note about this contact (only your team sees it)")}'
        "</label>"
        '<textarea id="note-text" rows="2" maxlength="4000" data-testid="note-text"></textarea>'
        f'<button type="submit" id="note-add" data-testid="note-add">{t("Add note")}</button>'
        '<p id="note-status" role="status"></p></form>'
        '<ul id="contact-notes" class="notes" data-testid="contact-notes"></ul>'
        f'<h3>{t("Conversations")}</h3><ul id="contact-conversations"></ul>'
        "</section></div>" + _scripts("contacts.js"),
        _attrs(v),
    )


def bot(v: Viewer) -> str:
    t = v.t
    header = _header(v, "Bot", "bot")
    title = translate(v.lang, "Bot") + " · WhatsApp console"
    if v.role != "admin":
        # The API's bot routes are for admins: the page says so rather than fail.
        return _page(
            v.lang,
            title,
            header
            + '<main class="note"><p>'
            + t("Only an admin can edit and publish the bot.")
            + "</p></main>",
            _attrs(v),
        )
    return _page(
        v.lang,
        title,
        header + '<div class="bot-layout">'
        f'<section class="bot-edit" aria-label="{t("Definition")}">'
        f'<div class="bar"><label for="bot-number">{t("Number")}</label>'
        '<select id="bot-number" data-testid="bot-number"></select>'
        '<span id="bot-version" class="muted"></span>'
        f'<button type="button" id="bot-check" data-testid="bot-check">{t("Check")}</button>'
        '<button type="button" id="bot-publish" data-testid="bot-publish">'
        f"{t('Publish')}</button>"
        "</div>"
        '<label for="bot-editor" class="editor-label">'
        + t(
            "The definition (YAML or JSON; see docs/bot.md). Tab indents; Escape then Tab"
            " leaves the editor."
        )
        + "</label>"
        '<textarea id="bot-editor" data-testid="bot-editor" spellcheck="false" rows="24">'
        "</textarea>"
        '<p id="bot-status" role="status" data-testid="bot-status"></p>'
        f'<ul id="bot-problems" class="problems" aria-label="{t("Problems")}"></ul>'
        "</section>"
        f'<section class="bot-sim" aria-label="{t("Simulator")}">'
        f"<h2>{t('Simulator')}</h2>"
        f'<p class="muted">{t("Plays the text being edited; nothing is sent or recorded.")}</p>'
        '<ol id="sim-log" class="messages" aria-live="polite"></ol>'
        '<form id="sim-form" class="reply">'
        f'<label for="sim-input">{t("The customer says")}</label>'
        '<input id="sim-input" data-testid="sim-input" type="text" autocomplete="off">'
        f'<button type="submit" data-testid="sim-send">{t("Send")}</button>'
        f'<button type="button" id="sim-reset">{t("Start again")}</button>'
        "</form></section></div>" + _scripts("bot.js"),
        _attrs(v),
    )


def inbox(v: Viewer) -> str:
    t = v.t
    states = "".join(
        f'<option value="{code}">{t(code)}</option>'
        for code in ("bot", "waiting", "agent", "closed")
    )
    return _page(
        v.lang,
        translate(v.lang, "Inbox") + " · WhatsApp console",
        _header(v, "Inbox", "inbox") + '<div class="layout">'
        f'<nav class="inbox" aria-label="{t("Conversations")}">'
        f'<label for="state-filter">{t("Show")}</label>'
        f'<select id="state-filter"><option value="">{t("all")}</option>{states}</select>'
        '<label class="mine"><input type="checkbox" id="mine-filter"> '
        f"{t('assigned to me')}</label>"
        f'<label for="number-filter">{t("Number")}</label>'
        '<select id="number-filter" data-testid="number-filter">'
        f'<option value="">{t("all numbers")}</option></select>'
        f'<label for="tag-filter">{t("Tag")}</label>'
        '<input type="search" id="tag-filter" data-testid="tag-filter" autocomplete="off">'
        '<ul id="inbox-list"></ul><p id="inbox-empty" class="muted">'
        f"{t('No conversations yet.')}</p>"
        "</nav>"
        '<section class="conversation" id="conversation" hidden aria-live="polite">'
        '<div class="bar"><h2 id="conversation-title"></h2>'
        '<span data-testid="conversation-state" id="conversation-state" data-state=""></span>'
        '<span id="conversation-assignee" class="muted"></span>'
        '<button type="button" data-testid="take-over" id="take-over">'
        f"{t('Take over')}</button>"
        '<button type="button" data-testid="hand-back" id="hand-back">'
        f"{t('Hand back to the bot')}</button>"
        f'<button type="button" id="close-conversation">{t("Close")}</button>'
        f'<label for="assign-to" id="assign-label">{t("Assign to")}</label>'
        '<select id="assign-to" data-testid="assign-to">'
        f'<option value="">{t("nobody")}</option></select>'
        "</div>"
        '<ol id="messages" class="messages"></ol>'
        '<form id="reply" class="reply">'
        f'<label for="reply-input">{t("Reply")}</label>'
        '<textarea id="reply-input" data-testid="reply-input" rows="2" maxlength="4096">'
        "</textarea>"
        f'<label for="reply-file" class="attach">{t("Attach a file")}</label>'
        '<input id="reply-file" type="file" data-testid="reply-file"'
        ' accept="image/jpeg,image/png,video/mp4,video/3gpp,audio/aac,audio/mpeg,audio/mp4,'
        'audio/ogg,audio/amr,application/pdf,text/plain,.doc,.docx,.xls,.xlsx,.ppt,.pptx">'
        f'<button type="submit" data-testid="reply-send" id="reply-send">{t("Send")}</button>'
        '<p id="reply-error" class="error" role="alert"></p>'
        "</form>"
        '<form id="template-reply" class="reply template-reply" hidden>'
        '<p class="note-line">'
        + t("The customer's 24 hour window is closed: only an approved template can be sent.")
        + "</p>"
        f'<label for="template-select">{t("Template")}</label>'
        '<select id="template-select" data-testid="template-select">'
        f'<option value="">{t("choose one")}</option></select>'
        '<div id="template-vars" class="template-vars"></div>'
        '<p id="template-preview" class="muted" data-testid="template-preview"></p>'
        '<button type="submit" data-testid="template-send" id="template-send">'
        f"{t('Send template')}</button>"
        '<p id="template-error" class="error" role="alert"></p>'
        "</form></section></div>" + _scripts("templates.js", "app.js"),
        _attrs(v),
    )
