"""The console's settings page (`/console/settings`, admins): the business's numbers, API
keys, console users and CRM webhook endpoints with their delivery logs. The shell is
rendered here; settings.js fills it through `/v1` (the admin routes), so the server checks
every read and write. Another role gets a page saying only an admin manages settings."""

from __future__ import annotations

from services.api.console.i18n import t as translate
from services.api.console.pages import Viewer, _attrs, _header, _page, _scripts

ROLES = ("admin", "agent", "viewer")
LANGUAGES = {"en": "English", "it": "Italiano"}


def _options(v: Viewer, codes: tuple[str, ...], selected: str) -> str:
    return "".join(
        f'<option value="{code}"{" selected" if code == selected else ""}>{v.t(code)}</option>'
        for code in codes
    )


def _field(v: Viewer, form: str, name: str, label: str, control: str) -> str:
    """A labelled control with its own place for the API's 422 message about it."""
    error = f"{form}-{name}-error"
    return (
        f'<div class="field"><label for="{form}-{name}">{v.t(label)}</label>'
        + control.replace("<input ", f'<input aria-describedby="{error}" ', 1).replace(
            "<select ", f'<select aria-describedby="{error}" ', 1
        )
        + f'<p class="error field-error" id="{error}" data-field="{name}"></p></div>'
    )


def _numbers(v: Viewer) -> str:
    t = v.t
    heads = ("Display number", "Phone number id", "WABA", "Sends per second", "Meta app")
    return (
        '<section class="settings-section" aria-labelledby="numbers-title">'
        f'<h2 id="numbers-title">{t("Numbers")}</h2>'
        '<table id="numbers-table" data-testid="numbers-table"><thead><tr>'
        + "".join(f'<th scope="col">{t(h)}</th>' for h in heads)
        + '</tr></thead><tbody id="numbers"></tbody></table>'
        f'<p id="numbers-empty" class="muted" hidden>{t("No numbers.")}</p></section>'
    )


def _secret_box(v: Viewer, prefix: str, label: str) -> str:
    """Where a new secret is shown, once: a read-only field to copy it from."""
    return (
        f'<div class="secret" id="{prefix}-secret-box" hidden>'
        f'<p class="note-line"><strong>{v.t("Shown only now:")}</strong> '
        + v.t("copy it and keep it safe; it cannot be shown again.")
        + "</p>"
        f'<label for="{prefix}-secret">{v.t(label)}</label>'
        f'<input id="{prefix}-secret" data-testid="{prefix}-secret" type="text" readonly'
        ' spellcheck="false" autocomplete="off">'
        f'<button type="button" id="{prefix}-secret-copy">{v.t("Copy")}</button>'
        f'<button type="button" id="{prefix}-secret-done">{v.t("Done")}</button>'
        "</div>"
    )


def _keys(v: Viewer) -> str:
    t = v.t
    return (
        '<section class="settings-section" aria-labelledby="keys-title">'
        f'<h2 id="keys-title">{t("API keys")}</h2>'
        '<form id="key-form" class="settings-form" novalidate>'
        + _field(
            v, "key", "name", "Name",
            '<input id="key-name" data-testid="key-name" type="text" maxlength="200" required>',
        )
        + _field(
            v, "key", "role", "Role",
            f'<select id="key-role" data-testid="key-role">{_options(v, ROLES, "agent")}</select>',
        )
        + f'<button type="submit" data-testid="key-issue">{t("Issue a key")}</button></form>'
        + _secret_box(v, "key", "The new key")
        + '<p id="key-status" class="status" role="status"></p>'
        '<table id="keys-table"><thead><tr>'
        + "".join(f'<th scope="col">{t(h)}</th>' for h in ("Name", "Role", "Issued", "Actions"))
        + '</tr></thead><tbody id="keys"></tbody></table>'
        f'<p id="keys-empty" class="muted" hidden>{t("No keys.")}</p></section>'
    )  # fmt: skip


def _users(v: Viewer) -> str:
    t = v.t
    languages = "".join(f'<option value="{c}">{n}</option>' for c, n in LANGUAGES.items())
    return (
        '<section class="settings-section" aria-labelledby="users-title">'
        f'<h2 id="users-title">{t("Users")}</h2>'
        '<form id="user-form" class="settings-form" novalidate>'
        + _field(
            v, "user", "email", "Email",
            '<input id="user-email" data-testid="user-email" type="email" autocomplete="off">',
        )
        + _field(
            v, "user", "name", "Name",
            '<input id="user-name" data-testid="user-name" type="text" maxlength="200">',
        )
        + _field(
            v, "user", "role", "Role",
            '<select id="user-role" data-testid="user-role">'
            f'{_options(v, ROLES, "agent")}</select>',
        )
        + _field(
            v, "user", "password", "Password (10 characters or more)",
            '<input id="user-password" data-testid="user-password" type="password"'
            ' autocomplete="new-password">',
        )
        + _field(
            v, "user", "language", "Language",
            f'<select id="user-language" data-testid="user-language">{languages}</select>',
        )
        + f'<button type="submit" data-testid="user-add">{t("Add the user")}</button></form>'
        '<p id="user-status" class="status" role="status"></p>'
        '<table id="users-table"><thead><tr>'
        + "".join(
            f'<th scope="col">{t(h)}</th>' for h in ("Name", "Email", "Role", "Language", "Actions")
        )
        + '</tr></thead><tbody id="users"></tbody></table></section>'
    )  # fmt: skip


def _webhooks(v: Viewer) -> str:
    t = v.t
    return (
        '<section class="settings-section" aria-labelledby="webhooks-title">'
        f'<h2 id="webhooks-title">{t("CRM webhooks")}</h2>'
        '<form id="endpoint-form" class="settings-form" novalidate>'
        + _field(
            v, "endpoint", "url", "URL",
            '<input id="endpoint-url" data-testid="endpoint-url" type="url" maxlength="2000"'
            ' placeholder="https://">',
        )
        + _field(
            v, "endpoint", "description", "Description",
            '<input id="endpoint-description" data-testid="endpoint-description" type="text"'
            ' maxlength="1000">',
        )
        + '<fieldset class="event-types" id="endpoint-event-types">'
        f"<legend>{t('Events (none chosen: every event)')}</legend>"
        '<div id="event-type-list"></div>'
        '<p class="error field-error" id="endpoint-event_types-error"'
        ' data-field="event_types"></p></fieldset>'
        f'<button type="submit" data-testid="endpoint-add">{t("Add the endpoint")}</button>'
        "</form>"
        + _secret_box(v, "endpoint", "The endpoint's signing secret")
        + '<p id="endpoint-status" class="status" role="status"></p>'
        '<table id="endpoints-table"><thead><tr>'
        + "".join(
            f'<th scope="col">{t(h)}</th>'
            for h in ("URL", "Description", "Events", "State", "Actions")
        )
        + '</tr></thead><tbody id="endpoints"></tbody></table>'
        f'<p id="endpoints-empty" class="muted" hidden>{t("No endpoints.")}</p>'
        '<section id="deliveries-panel" class="deliveries" hidden'
        ' aria-labelledby="deliveries-title">'
        '<h3 id="deliveries-title"></h3>'
        '<div class="bar">'
        f'<button type="button" id="deliveries-refresh">{t("Refresh")}</button>'
        '<button type="button" id="deliveries-replay-dead" data-testid="replay-dead">'
        f"{t('Replay the dead letters')}</button>"
        f'<button type="button" id="deliveries-close">{t("Close")}</button></div>'
        '<p id="deliveries-status" class="status" role="status"></p>'
        '<table id="deliveries-table"><thead><tr>'
        + "".join(
            f'<th scope="col">{t(h)}</th>'
            for h in ("Event", "State", "Attempts", "Last response", "Time", "Actions")
        )
        + '</tr></thead><tbody id="deliveries"></tbody></table>'
        f'<p id="deliveries-empty" class="muted" hidden>{t("No deliveries yet.")}</p>'
        "</section></section>"
    )  # fmt: skip


def settings(v: Viewer) -> str:
    header = _header(v, "Settings", "settings")
    title = translate(v.lang, "Settings") + " · WhatsApp console"
    if v.role != "admin":
        # Every route the page uses is for admins: the page says so rather than fail.
        return _page(
            v.lang,
            title,
            header
            + '<main class="note" data-testid="settings-admin-only"><p>'
            + v.t("Only an admin manages the settings.")
            + "</p></main>",
            _attrs(v),
        )
    return _page(
        v.lang,
        title,
        header
        + '<main class="settings">'
        + _numbers(v)
        + _keys(v)
        + _users(v)
        + _webhooks(v)
        + "</main>"
        + _scripts("settings.js"),
        _attrs(v),
    )
