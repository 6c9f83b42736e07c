"""The campaigns page's shell and texts: the wizard and the controls rendered for admins
only; every text the page and its script ask for has its Italian, placeholders kept; the
script's Console.t calls take a plain string literal (what the extraction reads)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from services.api.console import campaigns_page, i18n
from services.api.console.pages import Viewer

CONSOLE = Path(campaigns_page.__file__).parent
PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})|\{\{\{([a-z_]+)\}\}\}")


def _python_texts() -> list[str]:
    tree = ast.parse((CONSOLE / "campaigns_page.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        args = node.args[1:] if name == "translate" else node.args
        if name in ("t", "translate") and args and isinstance(args[0], ast.Constant):
            found.append(str(args[0].value))
    return found


def _script() -> str:
    return (CONSOLE / "static" / "campaigns.js").read_text(encoding="utf-8")


def _script_texts() -> list[str]:
    return [json.loads(f'"{m}"') for m in re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', _script())]


def test_every_text_has_its_italian_with_the_same_placeholders() -> None:
    texts = _python_texts() + _script_texts() + list(campaigns_page.RECIPIENT_STATUSES)
    assert len(texts) > 50  # the extraction found them
    catalogue = i18n.catalogue("it")
    missing = [text for text in texts if text not in catalogue]
    assert missing == []
    for text in texts:
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(catalogue[text]))


def test_the_script_asks_for_texts_as_literals_only() -> None:
    calls = re.findall(r"\bt\((.)", _script())
    assert calls and set(calls) == {'"'}


def _render(role: str, lang: str = "en") -> str:
    return campaigns_page.campaigns(Viewer("u1", "Ada <b>", "a@x", role, "tok", lang))


def test_the_wizard_and_the_controls_are_for_admins() -> None:
    admin = _render("admin")
    assert 'id="campaign-form"' in admin and 'id="templates-sync"' in admin
    assert 'data-testid="campaign-pause"' in admin
    for role in ("agent", "viewer"):
        page = _render(role)
        assert 'id="campaign-form"' not in page and 'id="templates-sync"' not in page
        assert 'data-testid="campaign-pause"' not in page
        assert 'data-testid="campaigns-read-only"' in page
        assert 'id="campaign-list"' in page and 'id="detail-funnel"' in page
    assert "Ada &lt;b&gt;" in admin and "<b>" not in admin
    italian = _render("admin", "it")
    assert "Modelli e campagne" in italian and "Conta i destinatari" in italian
    assert "<script>" not in italian  # the catalogue is a data block, the script a file
