"""The console's templates and campaigns page (`/console/campaigns`): the business's
templates (and, for admins, the sync from Meta), the campaign wizard (admins only: the
API's campaign writes are theirs), the campaigns with their live counts and recipients.
The shell is rendered here; campaigns.js fills it through `/v1`, names set as text."""

from __future__ import annotations

from services.api.console import pages
from services.api.console.pages import Viewer, _attrs, _header, _page, _scripts

# The recipient statuses the filter offers (the API's RECIPIENT_STATUSES).
RECIPIENT_STATUSES = ("queued", "sent", "delivered", "read", "failed", "skipped")


def _templates(v: Viewer) -> str:
    t = v.t
    sync = (
        f'<button type="button" id="templates-sync" data-testid="templates-sync">'
        f"{t('Sync from Meta')}</button>"
        if v.role == "admin"
        else ""
    )
    return (
        f'<section class="panel" aria-labelledby="templates-title">'
        f'<div class="bar"><h2 id="templates-title">{t("Templates")}</h2>{sync}'
        '<p id="templates-status" role="status" data-testid="templates-status"></p></div>'
        '<table class="grid" data-testid="templates-table"><thead><tr>'
        f'<th scope="col">{t("Name")}</th><th scope="col">{t("Language")}</th>'
        f'<th scope="col">{t("Category")}</th><th scope="col">{t("Status")}</th>'
        '</tr></thead><tbody id="templates-body"></tbody></table>'
        f'<p id="templates-empty" class="muted">{t("No templates: sync them from Meta.")}</p>'
        "</section>"
    )


def _field_error(name: str) -> str:
    return f'<p id="error-{name}" class="error" data-testid="error-{name}"></p>'


def _wizard(v: Viewer) -> str:
    t = v.t
    if v.role != "admin":
        return (
            '<section class="panel note" data-testid="campaigns-read-only"><p>'
            + t("Only an admin can create, start, pause or cancel campaigns.")
            + "</p></section>"
        )
    return (
        '<section class="panel" aria-labelledby="wizard-title">'
        f'<h2 id="wizard-title">{t("New campaign")}</h2>'
        '<form id="campaign-form" class="wizard" data-testid="campaign-form" novalidate>'
        f'<label for="campaign-name">{t("Name")}</label>'
        '<input id="campaign-name" data-testid="campaign-name" type="text" maxlength="200"'
        ' aria-describedby="error-name" required>'
        + _field_error("name")
        + f'<label for="campaign-number">{t("Number")}</label>'
        '<select id="campaign-number" data-testid="campaign-number"'
        ' aria-describedby="error-number"></select>'
        + _field_error("number")
        + f'<label for="campaign-template">{t("Approved template")}</label>'
        '<select id="campaign-template" data-testid="campaign-template"'
        ' aria-describedby="error-template">'
        f'<option value="">{t("choose one")}</option></select>'
        + _field_error("template")
        + f'<fieldset class="audience"><legend>{t("Audience")}</legend>'
        '<label class="check"><input type="radio" name="audience-kind" value="tags"'
        f' id="audience-kind-tags" checked> {t("Contacts with any of these tags")}</label>'
        '<label class="check"><input type="radio" name="audience-kind" value="pasted"'
        f' id="audience-kind-pasted"> {t("Pasted recipients")}</label>'
        f'<label for="audience-tags">{t("Tags (separated by commas)")}</label>'
        '<input id="audience-tags" data-testid="audience-tags" type="text" autocomplete="off"'
        ' aria-describedby="error-audience">'
        '<label for="audience-pasted">'
        + t(
            "Recipients: one number a line, or a CSV with a header (to, then one column per"
            " variable)"
        )
        + "</label>"
        '<textarea id="audience-pasted" data-testid="audience-pasted" rows="4"'
        ' aria-describedby="error-audience" disabled></textarea>'
        f'<button type="button" id="audience-count" data-testid="audience-count">'
        f"{t('Count recipients')}</button>"
        '<p id="audience-result" data-testid="audience-result" role="status"></p>'
        + _field_error("audience")
        + "</fieldset>"
        f'<fieldset class="variables"><legend>{t("Variables")}</legend>'
        '<p class="muted" id="variables-help">'
        + t(
            "A value for everyone, or one taken from each contact: {{contact.name}},"
            " {{contact.wa_id}}, {{contact.city}} (an attribute)."
        )
        + "</p>"
        '<div id="campaign-variables" class="template-vars"></div>'
        f'<p id="variables-none" class="muted">{t("The template takes no variables.")}</p>'
        + _field_error("variables")
        + "</fieldset>"
        f'<label for="campaign-schedule">{t("Send at (optional, your local time)")}</label>'
        '<input id="campaign-schedule" data-testid="campaign-schedule" type="datetime-local"'
        ' aria-describedby="error-schedule">'
        + _field_error("schedule")
        + '<button type="submit" id="campaign-create" data-testid="campaign-create">'
        f"{t('Create and start')}</button>"
        '<p id="campaign-error" class="error" role="alert" data-testid="campaign-error"></p>'
        "</form></section>"
    )


def _list_and_detail(v: Viewer) -> str:
    t = v.t
    statuses = "".join(f'<option value="{s}">{t(s)}</option>' for s in RECIPIENT_STATUSES)
    controls = (
        '<div class="controls" id="detail-controls">'
        f'<button type="button" id="campaign-start" data-testid="campaign-start" hidden>'
        f"{t('Start')}</button>"
        f'<button type="button" id="campaign-pause" data-testid="campaign-pause" hidden>'
        f"{t('Pause')}</button>"
        f'<button type="button" id="campaign-resume" data-testid="campaign-resume" hidden>'
        f"{t('Resume')}</button>"
        f'<button type="button" id="campaign-cancel" data-testid="campaign-cancel" hidden>'
        f"{t('Cancel')}</button>"
        "</div>"
        if v.role == "admin"
        else ""
    )
    return (
        '<section class="panel" aria-labelledby="campaigns-title">'
        f'<h2 id="campaigns-title">{t("Campaigns")}</h2>'
        '<ul id="campaign-list" class="campaign-list"></ul>'
        f'<p id="campaigns-empty" class="muted">{t("No campaigns yet.")}</p>'
        "</section>"
        '<section class="panel" id="campaign-detail" data-testid="campaign-detail" hidden'
        ' aria-labelledby="detail-name">'
        '<div class="bar"><h2 id="detail-name" data-testid="detail-name"></h2>'
        '<span id="detail-status" class="state" data-testid="detail-status" data-state="">'
        "</span>"
        '<span id="detail-note" class="muted"></span>' + controls + "</div>"
        '<p id="detail-error" class="error" role="alert" data-testid="detail-error"></p>'
        f'<h3 id="funnel-title">{t("Progress")}</h3>'
        '<div id="detail-funnel" class="funnel" aria-labelledby="funnel-title"'
        ' aria-live="polite"></div>'
        f'<h3 id="variants-title">{t("Variants")}</h3>'
        # Focusable: a region that scrolls sideways must be reachable from the keyboard.
        '<div class="table-scroll" tabindex="0" role="region" aria-labelledby="variants-title">'
        '<table class="grid figures" aria-labelledby="variants-title">'
        "<thead><tr>"
        f'<th scope="col">{t("Template")}</th><th scope="col">{t("Weight")}</th>'
        f'<th scope="col">{t("Total")}</th><th scope="col">{t("Sent")}</th>'
        f'<th scope="col">{t("Delivered")}</th><th scope="col">{t("Read")}</th>'
        f'<th scope="col">{t("Replied")}</th><th scope="col">{t("Failed")}</th>'
        f'<th scope="col">{t("Skipped")}</th>'
        '</tr></thead><tbody id="variants-body"></tbody></table></div>'
        f'<h3 id="recipients-title">{t("Recipients")}</h3>'
        f'<label for="recipient-filter">{t("Show")}</label>'
        '<select id="recipient-filter" data-testid="recipient-filter">'
        f'<option value="">{t("all statuses")}</option>{statuses}</select>'
        '<table class="grid" aria-labelledby="recipients-title"><thead><tr>'
        f'<th scope="col">{t("Recipient")}</th><th scope="col">{t("Status")}</th>'
        f'<th scope="col">{t("Detail")}</th>'
        '</tr></thead><tbody id="recipients-body"></tbody></table>'
        f'<button type="button" id="recipients-more" hidden>{t("More")}</button>'
        "</section>"
    )


def campaigns(v: Viewer) -> str:
    return _page(
        v.lang,
        pages.translate(v.lang, "Campaigns") + " · WhatsApp console",
        _header(v, "Templates and campaigns", "campaigns")
        + '<main class="campaigns-layout"><div class="column">'
        + _templates(v)
        + _wizard(v)
        + '</div><div class="column">'
        + _list_and_detail(v)
        + "</div></main>"
        + _scripts("templates.js", "campaigns.js"),
        _attrs(v),
    )
