"""The console's languages: every text the pages and scripts ask for has its Italian, with
the same placeholders; the choice of language is read from the browser for a visitor and
kept per user (tests/e2e/test_console_i18n.py shows a page in Italian in the browser)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.api.console import analytics_page, campaigns_page, i18n, pages, settings_page

CONSOLE = Path(pages.__file__).parent
# Texts the scripts translate from a value rather than a literal: states, media kinds, roles.
DYNAMIC = [
    *("bot", "waiting", "agent", "closed", "admin", "viewer"),
    *("image", "sticker", "audio", "voice", "video", "document", "file"),
]
# The sign-in's refusals (services/api/console/__init__.py), translated when shown.
REFUSALS = re.compile(r'(?:refused|i18n\.t\(lang,)\(?\s*"([^"]+)"')
JS_TEXT = re.compile(r'\bt\(\s*"((?:[^"\\]|\\.)*)"')


def renderers() -> list[Callable[[pages.Viewer], str]]:
    """Every page of the console, as its route renders it."""
    return [
        pages.inbox,
        pages.contacts,
        pages.bot,
        analytics_page.analytics,
        campaigns_page.campaigns,
        settings_page.settings,
    ]


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    texts: set[str] = set()
    real = i18n.t

    def recording(lang: str, text: str, **values: object) -> str:
        texts.add(text)
        return real(lang, text, **values)

    monkeypatch.setattr(pages, "translate", recording)
    monkeypatch.setattr(settings_page, "translate", recording)
    yield texts


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_text_of_every_page_and_script_has_its_italian(asked: set[str]) -> None:
    for role in ("admin", "agent", "viewer"):
        for render in renderers():
            render(pages.Viewer("usr_1", "Ann", "a@x", role, "csrf", "it"))
    pages.sign_in("token", lang="it")
    assert len(asked) > 40, "the pages asked for no texts: the recorder saw nothing"
    scripts = set()
    for path in sorted((CONSOLE / "static").glob("*.js")):
        scripts |= {m.encode().decode("unicode_escape") for m in JS_TEXT.findall(path.read_text())}
    assert len(scripts) > 20, "no Console.t(...) found in the scripts"
    refusals = set(REFUSALS.findall((CONSOLE / "__init__.py").read_text()))
    assert "Wrong email or password." in refusals
    italian = i18n.catalogue("it")
    wanted = asked | scripts | refusals | set(DYNAMIC)
    missing = sorted(text for text in wanted if text not in italian)
    assert missing == [], f"texts without their Italian in i18n/it.json: {missing}"
    moved = sorted(t for t in wanted if _placeholders(t) != _placeholders(italian[t]))
    assert moved == [], f"translations whose placeholders differ: {moved}"


def test_a_text_missing_from_the_catalogue_shows_in_english_and_placeholders_fill() -> None:
    assert i18n.t("it", "no such text {n}", n=3) == "no such text 3"
    assert i18n.t("it", "Sign in") != "Sign in"
    assert i18n.t("en", "Sign in") == "Sign in"
    assert i18n.t("xx", "Sign in") == "Sign in"


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("it-IT,it;q=0.9,en;q=0.8", "it"),
        ("en-US,en;q=0.9,it;q=0.8", "en"),
        ("de-DE,it;q=0.5", "it"),
        ("de, fr", "en"),
        ("", "en"),
        ("it;q=0.1, en;q=0.9", "en"),
        ("it;q=bad", "en"),
        (";;;,,", "en"),
    ],
)
def test_a_visitor_is_greeted_in_their_browsers_language(header: str, lang: str) -> None:
    assert i18n.best(header) == lang


def test_an_italian_page_is_italian_and_keeps_its_codes_and_hooks() -> None:
    page = pages.inbox(pages.Viewer("usr_1", "Ann", "a@x", "agent", "csrf", "it"))
    shown = page.replace(i18n.script_block("it"), "")  # the catalogue holds the English keys
    assert '<html lang="it">' in page and "Prendi in carico" in shown and "Take over" not in shown
    assert 'data-testid="take-over"' in page and '<option value="waiting">' in page
    assert 'data-lang="it"' in page and 'id="console-i18n"' in page


def test_the_catalogue_block_cannot_close_its_element() -> None:
    block = i18n.script_block("it")
    inner = block.removeprefix('<script type="application/json" id="console-i18n">')
    assert "<" not in inner.removesuffix("</script>")
