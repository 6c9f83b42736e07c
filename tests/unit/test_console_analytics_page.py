"""The analytics page's texts: every one the page and its script ask for has its Italian
translation, and the page renders in Italian with nothing inline but the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

from services.api.console import analytics_page, i18n
from services.api.console.pages import Viewer

CONSOLE = Path(analytics_page.__file__).parent
LITERAL = re.compile(r'\bt\("((?:[^"\\]|\\.)*)"')


def _asked() -> set[str]:
    script = (CONSOLE / "static" / "analytics.js").read_text(encoding="utf-8")
    page = (CONSOLE / "analytics_page.py").read_text(encoding="utf-8")
    titles = {title for _, title in analytics_page.CHARTS}
    return set(LITERAL.findall(script)) | set(LITERAL.findall(page)) | titles | {"Analytics"}


def test_every_text_has_its_italian() -> None:
    asked = _asked()
    assert len(asked) > 40  # the extraction found the script's texts
    missing = sorted(asked - set(i18n.catalogue("it")))
    assert missing == []
    # Placeholders survive the translation.
    for text in asked:
        assert set(re.findall(r"{\w+}", text)) == set(re.findall(r"{\w+}", i18n.t("it", text)))


def test_the_page_renders_in_italian_without_inline_code() -> None:
    html = analytics_page.analytics(Viewer("usr_1", "Ada", "ada@x", "viewer", "tok", "it"))
    assert "Statistiche" in html and "Tempo della prima risposta" in html
    assert 'href="/console/analytics" aria-current="page"' in html
    scripts = re.findall(r"<script([^>]*)>", html)
    assert all('src="' in s or 'type="application/json"' in s for s in scripts)
    assert "style=" not in html and "<style" not in html
    for key, _ in analytics_page.CHARTS:
        assert f'data-testid="chart-{key}"' in html
