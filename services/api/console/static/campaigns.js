// The templates and campaigns page: the business's templates (sync from Meta), the campaign
// wizard (an approved template, an audience counted before sending, one field per template
// variable, an optional time), the campaigns with their counts refreshed live while one is
// open, its controls and its recipients. Everything goes through /v1; every name (template,
// campaign, recipient) is set as text. The wizard and the controls exist for admins only,
// and the server refuses anyone else's writes anyway.
"use strict";

(function () {
  const { api, el, newKey, t } = window.Console;
  const isAdmin = window.Console.role === "admin";
  const POLL_MS = 1500; // an open campaign's counts: read again this often
  const COUNTS = ["total", "queued", "sent", "delivered", "read", "replied", "failed", "skipped"];
  const LABELS = {
    total: t("Total"), queued: t("Queued"), sent: t("Sent"), delivered: t("Delivered"),
    read: t("Read"), replied: t("Replied"), failed: t("Failed"), skipped: t("Skipped"),
  };
  const STATUS_NAMES = {
    draft: t("draft"), scheduled: t("scheduled"), running: t("running"), paused: t("paused"),
    completed: t("completed"), cancelled: t("cancelled"), queued: t("queued"), sent: t("sent"),
    delivered: t("delivered"), read: t("read"), failed: t("failed"), skipped: t("skipped"),
  };
  const SKIP_REASONS = {
    opted_out: t("opted out of marketing"),
    duplicate: t("a duplicate in the audience"),
    no_identity: t("no usable number"),
    marketing_limit: t("Meta's marketing limit for this customer"),
  };
  const $ = (id) => document.getElementById(id);

  let templates = []; // every template of the business (GET /v1/templates)
  let openId = null; // the campaign shown in the detail
  let openSeen = ""; // its counts as last shown: the recipients are read again when they move
  let recipientsCursor = null;
  let pollTimer = null;
  let listedAt = 0; // when the campaigns' list was last read
  const LIST_MS = 10000;

  function statusName(code) {
    return Object.prototype.hasOwnProperty.call(STATUS_NAMES, code) ? STATUS_NAMES[code] : code;
  }

  // --- templates --------------------------------------------------------------------------

  async function loadTemplates() {
    const found = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const data = await api("GET", "/v1/templates?limit=200" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      found.push(...data.data);
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    templates = found;
    const body = $("templates-body");
    body.replaceChildren();
    $("templates-empty").hidden = templates.length > 0;
    for (const tpl of templates) {
      const row = el("tr");
      row.setAttribute("data-testid", "template-row");
      row.dataset.status = tpl.status;
      row.append(el("td", "name", tpl.name), el("td", "", tpl.language), el("td", "", tpl.category));
      const status = el("td");
      status.append(el("span", "state template-" + tpl.status.toLowerCase(), tpl.status));
      row.append(status);
      body.append(row);
    }
    fillTemplateSelect();
  }

  const syncButton = $("templates-sync");
  if (syncButton) {
    syncButton.addEventListener("click", async () => {
      const status = $("templates-status");
      syncButton.disabled = true;
      status.textContent = t("Syncing...");
      try {
        const answer = await api("POST", "/v1/templates/sync", {});
        await loadTemplates();
        status.textContent = t("{count} templates synced.", { count: answer.synced });
      } catch (error) {
        status.textContent = t("The sync failed: {reason}", { reason: error.message });
      } finally {
        syncButton.disabled = false;
      }
    });
  }

  // --- the wizard -------------------------------------------------------------------------

  const form = $("campaign-form");
  const templateSelect = $("campaign-template");
  const variablesBox = $("campaign-variables");

  function approved() {
    return templates.filter((tpl) => tpl.status === "APPROVED");
  }

  function fillTemplateSelect() {
    if (!templateSelect) return;
    const before = templateSelect.value;
    templateSelect.replaceChildren(el("option", "", t("choose one")));
    templateSelect.firstChild.value = "";
    for (const tpl of approved()) {
      const option = el("option", "", tpl.name + " (" + tpl.language + ") · " + tpl.category);
      option.value = tpl.id;
      templateSelect.append(option);
    }
    templateSelect.value = before;
    if (templateSelect.value !== before) templateSelect.value = "";
    showVariables();
  }

  function chosen() {
    return templates.find((tpl) => tpl.id === templateSelect.value) || null;
  }

  // The variables a template takes, and its body: templates.js (the inbox's picker too).
  const { slots, bodyText } = window.ConsoleTemplates;

  function showVariables() {
    if (!variablesBox) return;
    const tpl = chosen();
    const kept = currentVariables();
    variablesBox.replaceChildren();
    const wanted = tpl ? slots(tpl) : [];
    $("variables-none").hidden = !tpl || wanted.length > 0;
    if (tpl) {
      const preview = el("p", "muted preview-text", bodyText(tpl));
      preview.id = "template-body";
      variablesBox.append(preview);
    }
    wanted.forEach((slot, i) => {
      const id = "campaign-var-" + i;
      const label = el("label", "", slot.label);
      label.htmlFor = id;
      const input = el("input");
      input.id = id;
      input.type = "text";
      input.autocomplete = "off";
      input.dataset.variable = slot.variable;
      input.setAttribute("data-testid", "campaign-variable");
      input.setAttribute("aria-describedby", "variables-help error-variables");
      input.placeholder = "{{contact.name}}";
      if (slot.unsupported) input.disabled = true;
      if (kept[slot.variable] !== undefined) input.value = kept[slot.variable];
      input.addEventListener("input", recountSoon);
      variablesBox.append(label, input);
    });
  }

  function currentVariables() {
    const out = {};
    if (!variablesBox) return out;
    for (const input of variablesBox.querySelectorAll("input[data-variable]")) {
      if (input.value.trim() !== "") out[input.dataset.variable] = input.value.trim();
    }
    return out;
  }

  function audienceKind() {
    return form.querySelector("input[name=audience-kind]:checked").value;
  }

  // The audience as the API takes it: tags, or the pasted lines as a CSV audience (a bare
  // list of numbers gets the header `to`), so numbers written with +, spaces or dashes are
  // read as the API reads a CSV's, and a bad line is counted and said, not the whole refused.
  function pastedIsBare() {
    const first = ($("audience-pasted").value.trim().split("\n")[0] || "").trim().toLowerCase();
    return audienceKind() !== "tags" && !/^(to|wa_id|phone)\s*(,|$)/.test(first);
  }

  function audience() {
    if (audienceKind() === "tags") {
      return { tags: $("audience-tags").value.split(",").map((s) => s.trim()).filter(Boolean) };
    }
    const text = $("audience-pasted").value.trim();
    const first = (text.split("\n")[0] || "").trim().toLowerCase();
    if (/^(to|wa_id|phone)\s*(,|$)/.test(first)) return { csv: text + "\n" };
    const lines = text.split("\n").map((s) => s.trim());
    const cells = lines.map((line) => (line ? '"' + line.split('"').join('""') + '"' : ""));
    return { csv: ["to", ...cells].join("\n") + "\n" };
  }

  function templateRef() {
    const tpl = chosen();
    return tpl ? { name: tpl.name, language: tpl.language } : undefined;
  }

  const FIELD_OF = [
    // [the API's field path, the page's error slot]; the first that matches
    [/\.variables|^variables/, "variables"],
    [/^name/, "name"],
    [/^phone_number_id/, "number"],
    [/^template|^variants/, "template"],
    [/^audience/, "audience"],
    [/^schedule_at/, "schedule"],
  ];

  function clearErrors() {
    for (const node of form.querySelectorAll(".error")) node.textContent = "";
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  // A 422's fields, each next to its own field; anything else under the button.
  function showError(error) {
    const fields = error.fields || [];
    if (!fields.length) {
      $("campaign-error").textContent = error.message;
      return;
    }
    for (const f of fields) {
      const match = FIELD_OF.find(([pattern]) => pattern.test(f.path || ""));
      const slot = match ? match[1] : null;
      const target = slot ? $("error-" + slot) : $("campaign-error");
      const line = (slot ? "" : (f.path || "") + ": ") + f.message;
      target.textContent = target.textContent ? target.textContent + " " + line : line;
      if (slot) {
        const input = form.querySelector('[aria-describedby~="error-' + slot + '"]');
        if (input) input.setAttribute("aria-invalid", "true");
      }
    }
  }

  function numberChoice() {
    const select = $("campaign-number");
    return select && select.value ? select.value : undefined;
  }

  async function count() {
    const result = $("audience-result");
    $("error-audience").textContent = "";
    const body = { audience: audience() };
    const number = numberChoice();
    if (number) body.phone_number_id = number;
    const ref = templateRef();
    if (ref) {
      body.template = ref;
      body.variables = currentVariables();
    }
    result.textContent = t("Counting...");
    delete result.dataset.total;
    try {
      const c = await api("POST", "/v1/campaigns/audience", body);
      result.dataset.total = c.total;
      result.dataset.reachable = c.reachable;
      result.dataset.optedOut = c.opted_out;
      let text = t("{total} in the audience: {reachable} will receive it.", { total: c.total, reachable: c.reachable });
      const left = [];
      if (c.opted_out) left.push(t("{n} opted out", { n: c.opted_out }));
      if (c.duplicate) left.push(t("{n} duplicates", { n: c.duplicate }));
      if (c.no_identity) left.push(t("{n} without a number", { n: c.no_identity }));
      if (c.csv_rejected) left.push(t("{n} rows of the CSV refused", { n: c.csv_rejected }));
      if (left.length) text += " " + t("Skipped: {list}.", { list: left.join(", ") });
      if (c.missing_variables) text += " " + t("{n} lack a variable: the start would be refused.", { n: c.missing_variables });
      result.textContent = text;
    } catch (error) {
      result.textContent = "";
      const fields = error.fields && error.fields.length ? error.fields : [{ path: "audience", message: error.message }];
      for (const f of fields) {
        const match = FIELD_OF.find(([pattern]) => pattern.test(f.path || ""));
        const target = $("error-" + (match ? match[1] : "audience"));
        target.textContent = f.message;
      }
    }
  }

  // A count already shown is read again when a variable changes (missing ones are counted).
  let recountTimer = null;
  function recountSoon() {
    if (!$("audience-result").textContent) return;
    clearTimeout(recountTimer);
    recountTimer = setTimeout(() => {
      if ($("audience-result").textContent) count(); // not once the form was sent or reset
    }, 400);
  }

  async function loadNumbers() {
    const select = $("campaign-number");
    const data = await api("GET", "/v1/numbers?limit=200");
    select.replaceChildren();
    for (const n of data.data) {
      const option = el("option", "", n.display_phone_number + " (" + n.phone_number_id + ")");
      option.value = n.phone_number_id;
      select.append(option);
    }
  }

  if (form) {
    for (const radio of form.querySelectorAll("input[name=audience-kind]")) {
      radio.addEventListener("change", () => {
        const tags = audienceKind() === "tags";
        $("audience-tags").disabled = !tags;
        $("audience-pasted").disabled = tags;
        $("audience-result").textContent = "";
      });
    }
    templateSelect.addEventListener("change", () => {
      showVariables();
      $("audience-result").textContent = "";
    });
    for (const id of ["audience-tags", "audience-pasted"]) {
      $(id).addEventListener("input", () => { $("audience-result").textContent = ""; });
    }
    $("audience-count").addEventListener("click", () => count());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearTimeout(recountTimer);
      clearErrors();
      const body = {
        name: $("campaign-name").value.trim(),
        template: templateRef(),
        audience: audience(),
        variables: currentVariables(),
      };
      if (!body.template) {
        $("error-template").textContent = t("Choose an approved template.");
        templateSelect.setAttribute("aria-invalid", "true");
        templateSelect.focus();
        return;
      }
      const number = numberChoice();
      if (number) body.phone_number_id = number;
      const when = $("campaign-schedule").value;
      if (when) body.schedule_at = new Date(when).toISOString();
      const button = $("campaign-create");
      button.disabled = true;
      let made = null;
      try {
        made = await api("POST", "/v1/campaigns", body, { "Idempotency-Key": newKey() });
        const refused = made.csv ? made.csv.rejected : [];
        const shift = pastedIsBare() ? 1 : 0; // the header the page added is not the user's
        const started = await api("POST", "/v1/campaigns/" + encodeURIComponent(made.id) + "/start", {});
        form.reset();
        $("audience-tags").disabled = false;
        $("audience-pasted").disabled = true;
        $("audience-result").textContent = "";
        showVariables();
        await loadCampaigns();
        await openCampaign(started.id);
        // The lines the CSV left out, with their reason (the rest was sent).
        if (refused.length) {
          $("detail-error").textContent = refused.map((r) =>
            t("Line {line} left out: {reason}", { line: r.line - shift, reason: r.reason })).join(" ");
        }
      } catch (error) {
        showError(error);
        if (made) {
          // Recorded as a draft: it is in the list, and its Start is there once fixed.
          $("campaign-error").textContent = t("The draft was saved but not started.") + " " + $("campaign-error").textContent;
          await loadCampaigns().catch(() => {});
        }
      } finally {
        button.disabled = false;
      }
    });
  }

  // --- campaigns --------------------------------------------------------------------------

  async function loadCampaigns() {
    listedAt = Date.now();
    const data = await api("GET", "/v1/campaigns?limit=100");
    const list = $("campaign-list");
    list.replaceChildren();
    $("campaigns-empty").hidden = data.data.length > 0;
    for (const c of data.data) {
      const item = el("li", "campaign-item" + (c.id === openId ? " open" : ""));
      item.setAttribute("data-testid", "campaign-item");
      item.dataset.campaignId = c.id;
      const button = el("button", "open");
      button.type = "button";
      const top = el("span", "line");
      top.append(el("strong", "name", c.name));
      const status = el("span", "state campaign-" + c.status, statusName(c.status));
      status.dataset.state = c.status;
      top.append(status);
      button.append(top);
      const sent = c.counts.sent + c.counts.failed + c.counts.skipped;
      button.append(el("span", "preview", c.template.name + " · " +
        t("{done} of {total} done", { done: sent, total: c.counts.total })));
      button.addEventListener("click", () => openCampaign(c.id));
      item.append(button);
      list.append(item);
    }
  }

  function countRow(name, value, total) {
    const row = el("div", "funnel-row");
    const id = "funnel-" + name;
    const label = el("label", "", LABELS[name]);
    label.htmlFor = id;
    const bar = el("progress");
    bar.id = id;
    bar.max = Math.max(total, 1);
    bar.value = value;
    const figure = el("span", "figure", String(value));
    figure.setAttribute("data-testid", "count-" + name);
    figure.dataset.value = String(value);
    row.append(label, bar, figure);
    return row;
  }

  function showCampaign(c) {
    $("detail-name").textContent = c.name;
    const status = $("detail-status");
    status.textContent = statusName(c.status);
    status.dataset.state = c.status;
    status.className = "state campaign-" + c.status;
    let note = c.template.name + " (" + c.template.language + ")";
    if (c.schedule_at) note += " · " + t("at {time}", { time: new Date(c.schedule_at).toLocaleString(window.Console.lang) });
    if (c.paused_reason) note += " · " + t("paused: {reason}", { reason: c.paused_reason });
    $("detail-note").textContent = note;
    const funnel = $("detail-funnel");
    funnel.replaceChildren(...COUNTS.map((name) => countRow(name, c.counts[name], c.counts.total)));
    const variants = $("variants-body");
    variants.replaceChildren();
    for (const v of c.variants) {
      const row = el("tr");
      row.setAttribute("data-testid", "variant-row");
      row.append(el("td", "name", v.template.name + " (" + v.template.language + ")"), el("td", "", String(v.weight)));
      for (const name of ["total", "sent", "delivered", "read", "replied", "failed", "skipped"]) {
        row.append(el("td", "", String(v.counts[name])));
      }
      variants.append(row);
    }
    if (isAdmin) {
      $("campaign-start").hidden = c.status !== "draft";
      $("campaign-pause").hidden = !["running", "scheduled"].includes(c.status);
      $("campaign-resume").hidden = c.status !== "paused";
      $("campaign-cancel").hidden = !["draft", "scheduled", "running", "paused"].includes(c.status);
    }
  }

  function recipientRow(r) {
    const row = el("tr");
    row.setAttribute("data-testid", "recipient-row");
    row.dataset.status = r.status;
    row.append(el("td", "name", r.to));
    const status = el("td");
    status.append(el("span", "state recipient-" + r.status, statusName(r.status)));
    row.append(status);
    let detail = "";
    if (r.error) detail = t("{title} ({code})", { title: r.error.title, code: r.error.code === null ? "?" : r.error.code });
    else if (r.skip_reason) detail = Object.prototype.hasOwnProperty.call(SKIP_REASONS, r.skip_reason) ? SKIP_REASONS[r.skip_reason] : r.skip_reason;
    else if (r.replied) detail = t("replied");
    const cell = el("td", "detail", detail);
    cell.setAttribute("data-testid", "recipient-detail");
    row.append(cell);
    return row;
  }

  async function loadRecipients(more) {
    if (!openId) return;
    const filter = $("recipient-filter").value;
    let path = "/v1/campaigns/" + encodeURIComponent(openId) + "/recipients?limit=100";
    if (filter) path += "&status=" + encodeURIComponent(filter);
    if (more && recipientsCursor) path += "&cursor=" + encodeURIComponent(recipientsCursor);
    const asked = openId;
    const data = await api("GET", path);
    if (asked !== openId) return;
    const body = $("recipients-body");
    if (!more) body.replaceChildren();
    for (const r of data.data) body.append(recipientRow(r));
    recipientsCursor = data.next_cursor;
    $("recipients-more").hidden = !recipientsCursor;
  }

  async function refreshOpen() {
    if (!openId) return;
    const asked = openId;
    const c = await api("GET", "/v1/campaigns/" + encodeURIComponent(openId));
    if (asked !== openId) return;
    showCampaign(c);
    const seen = JSON.stringify([c.status, c.counts]);
    if (seen !== openSeen) {
      const statusMoved = !openSeen.startsWith(JSON.stringify([c.status]).slice(0, -1) + ",");
      openSeen = seen;
      await loadRecipients(false);
      // The list counts every campaign listed: read again when the status moved, else at
      // most every LIST_MS while the counts move.
      if (statusMoved || Date.now() - listedAt > LIST_MS) await loadCampaigns();
    }
  }

  // While a campaign is open its counts are read again every POLL_MS (statuses keep moving
  // them after it completed); the timer waits for the previous read, never piles reads up.
  function schedulePoll() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(async () => {
      if (!document.hidden) await refreshOpen().catch(() => {});
      schedulePoll();
    }, POLL_MS);
  }

  async function openCampaign(id) {
    openId = id;
    openSeen = "";
    recipientsCursor = null;
    $("detail-error").textContent = "";
    $("campaign-detail").hidden = false;
    $("recipients-body").replaceChildren();
    if (window.location.hash !== "#" + id) history.replaceState(null, "", "#" + id);
    for (const item of document.querySelectorAll("[data-testid=campaign-item]")) {
      item.classList.toggle("open", item.dataset.campaignId === id);
    }
    try {
      await refreshOpen();
    } catch (error) {
      $("detail-error").textContent = error.message;
    }
    schedulePoll();
  }

  $("recipient-filter").addEventListener("change", () => loadRecipients(false).catch(() => {}));
  $("recipients-more").addEventListener("click", () => loadRecipients(true).catch(() => {}));

  if (isAdmin) {
    for (const action of ["start", "pause", "resume", "cancel"]) {
      const button = $("campaign-" + action);
      button.addEventListener("click", async () => {
        if (!openId) return;
        $("detail-error").textContent = "";
        button.disabled = true;
        try {
          const c = await api("POST", "/v1/campaigns/" + encodeURIComponent(openId) + "/" + action, {});
          showCampaign(c);
          openSeen = "";
          await refreshOpen();
        } catch (error) {
          const fields = (error.fields || []).map((f) => f.message).join(" ");
          $("detail-error").textContent = fields || error.message;
        } finally {
          button.disabled = false;
        }
      });
    }
  }

  async function start() {
    await loadTemplates();
    if (form) await loadNumbers();
    await loadCampaigns();
    const wanted = window.location.hash.slice(1);
    if (wanted) await openCampaign(decodeURIComponent(wanted));
  }

  start().catch((error) => { $("templates-status").textContent = error.message; });
})();
