"""The analytics page (`/console/analytics`, every role): a period and a number, and the
charts of `GET /v1/analytics` drawn by analytics.js as SVG, each with its title, axis
labels, a summary for screen readers and its figures as a table."""

from __future__ import annotations

from services.api.console.i18n import t as translate
from services.api.console.pages import Viewer, _attrs, _header, _page, _scripts

# (the chart's key, its title): analytics.js fills each section.
CHARTS = (
    ("messages", "Messages per day (UTC)"),
    ("responses", "First response time"),
    ("handoffs", "Handoff rate"),
    ("states", "Conversations by state"),
    ("campaigns", "Campaign funnels"),
)


def analytics(v: Viewer) -> str:
    t = v.t
    sections = "".join(
        f'<section class="chart" id="chart-{key}" data-testid="chart-{key}"'
        f' aria-labelledby="chart-{key}-title">'
        f'<h2 id="chart-{key}-title">{t(title)}</h2>'
        '<div class="chart-figure"></div>'
        f'<details class="chart-table"><summary>{t("The figures as a table")}</summary>'
        "</details></section>"
        for key, title in CHARTS
    )
    return _page(
        v.lang,
        translate(v.lang, "Analytics") + " · WhatsApp console",
        _header(v, "Analytics", "analytics") + '<main class="analytics">'
        '<form id="analytics-form" class="analytics-form">'
        f'<label for="analytics-from">{t("From")}</label>'
        '<input type="date" id="analytics-from" data-testid="analytics-from" required>'
        f'<label for="analytics-to">{t("To")}</label>'
        '<input type="date" id="analytics-to" data-testid="analytics-to" required>'
        f'<label for="analytics-number">{t("Number")}</label>'
        '<select id="analytics-number" data-testid="analytics-number">'
        f'<option value="">{t("all numbers")}</option></select>'
        f'<button type="submit" id="analytics-show" data-testid="analytics-show">{t("Show")}'
        "</button>"
        '<p id="analytics-status" role="status" data-testid="analytics-status"></p>'
        "</form>"
        f'<p class="muted">{t("Days are UTC days; both dates are included.")}</p>'
        f'<div class="charts">{sections}</div></main>' + _scripts("analytics.js"),
        _attrs(v),
    )
