"""The settings page's shell: an admin gets the four sections, another role only the note;
it speaks the viewer's language (tests/unit/test_console_i18n.py checks that every text of
it and of settings.js has its Italian); names never reach the HTML unescaped."""

from __future__ import annotations

from services.api.console import settings_page
from services.api.console.pages import Viewer


def _viewer(role: str, lang: str = "en", name: str = "Ada") -> Viewer:
    return Viewer("usr_1", name, "ada@example.com", role, "csrf-token", lang)


def test_an_admin_gets_the_sections_and_another_role_the_note() -> None:
    html = settings_page.settings(_viewer("admin"))
    for part in ('id="numbers"', 'id="key-form"', 'id="user-form"', 'id="endpoint-form"',
                 'id="deliveries-panel"', "/console/static/settings.js"):  # fmt: skip
        assert part in html
    for role in ("agent", "viewer"):
        note = settings_page.settings(_viewer(role))
        assert 'data-testid="settings-admin-only"' in note
        assert "settings.js" not in note and "key-form" not in note


def test_the_page_is_in_italian_and_a_name_stays_text() -> None:
    html = settings_page.settings(_viewer("admin", "it", name="<img src=x onerror=alert(1)>"))
    assert "Chiavi API" in html and "Emetti una chiave" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html
