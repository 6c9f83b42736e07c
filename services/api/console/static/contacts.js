// The contacts page: search, tags, attributes, marketing opt-out, a contact's
// conversations, and a CSV import, all through /v1/contacts. Contacts' names and values are
// untrusted: only ever set as text.
"use strict";

(function () {
  const { api, el, newKey, canWrite, t, me, role } = window.Console;
  const search = document.getElementById("contact-search");
  const tagFilter = document.getElementById("contact-tag");
  const list = document.getElementById("contact-list");
  const empty = document.getElementById("contacts-empty");
  const detail = document.getElementById("contact-detail");
  const title = document.getElementById("contact-name");
  const number = document.getElementById("contact-number");
  const tags = document.getElementById("contact-tags");
  const attributes = document.getElementById("contact-attributes");
  const optOut = document.getElementById("contact-opt-out");
  const form = document.getElementById("contact-form");
  const saveStatus = document.getElementById("contact-save-status");
  const conversations = document.getElementById("contact-conversations");
  const importForm = document.getElementById("contact-import");
  const importFile = document.getElementById("import-file");
  const importResult = document.getElementById("import-result");
  const notes = document.getElementById("contact-notes");
  const noteForm = document.getElementById("note-form");
  const noteText = document.getElementById("note-text");
  const noteStatus = document.getElementById("note-status");
  let openId = null;
  let people = null; // the business's people by id, to name a note's author

  if (!canWrite) {
    for (const node of [importForm, document.getElementById("contact-save"), noteForm]) node.remove();
    for (const node of [tags, attributes, optOut]) node.disabled = true;
  }

  async function refresh() {
    const q = search.value.trim();
    const tag = tagFilter.value.trim();
    const query = "?limit=100" + (q ? "&q=" + encodeURIComponent(q) : "") +
      (tag ? "&tag=" + encodeURIComponent(tag) : "");
    const data = await api("GET", "/v1/contacts" + query);
    list.replaceChildren();
    empty.hidden = data.data.length > 0;
    for (const c of data.data) {
      const item = el("li", "contact-item" + (c.id === openId ? " open" : ""));
      item.setAttribute("data-testid", "contact-item");
      item.dataset.contactId = c.id;
      const button = el("button", "open");
      button.type = "button";
      const top = el("span", "line");
      top.append(el("strong", "name", c.name || c.wa_id || c.user_id || c.id));
      if (c.marketing_opt_out) top.append(el("span", "state state-closed", t("opted out")));
      button.append(top);
      button.append(el("span", "preview", [c.wa_id || "", ...c.tags.map((t) => "#" + t)].join(" ")));
      button.addEventListener("click", () => open(c.id));
      item.append(button);
      list.append(item);
    }
  }

  function attributesText(values) {
    return Object.entries(values).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join("\n");
  }

  function parseAttributes(text) {
    const out = {};
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const at = line.indexOf("=");
      if (at < 1) throw new Error(t("An attribute is name=value: {line}", { line: line.trim() }));
      out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return out;
  }

  function parseTags(text) {
    return text.split(",").map((t) => t.trim()).filter(Boolean);
  }

  async function open(id) {
    openId = id;
    saveStatus.textContent = "";
    const [c, convs] = await Promise.all([
      api("GET", "/v1/contacts/" + encodeURIComponent(id)),
      api("GET", "/v1/conversations?limit=100&contact_id=" + encodeURIComponent(id)),
    ]);
    if (id !== openId) return;
    detail.hidden = false;
    title.textContent = c.name || c.wa_id || c.user_id || c.id;
    number.textContent = [c.wa_id, c.user_id].filter(Boolean).join(" · ");
    tags.value = c.tags.join(", ");
    attributes.value = attributesText(c.attributes);
    optOut.checked = c.marketing_opt_out;
    conversations.replaceChildren();
    for (const conv of convs.data) {
      const item = el("li", "");
      item.setAttribute("data-testid", "contact-conversation");
      const link = el("a", "", conv.last_message_preview || conv.id);
      link.href = "/console/#" + encodeURIComponent(conv.id);
      item.append(link, " ", el("span", "state state-" + conv.state, t(conv.state)));
      conversations.append(item);
    }
    if (!convs.data.length) conversations.append(el("li", "muted", t("No conversations.")));
    await Promise.all([refresh(), loadNotes(id)]);
  }

  async function authorOf(id) {
    if (people === null) {
      people = {};
      const response = await fetch("/console/colleagues", { credentials: "same-origin" });
      if (response.ok) for (const p of (await response.json()).data) people[p.id] = p.name;
    }
    if (id === me) return t("you");
    return people[id] || (id.startsWith("usr_") ? t("a former colleague") : t("an API key"));
  }

  // The contact's notes, newest first; their texts are the team's words, shown as text.
  async function loadNotes(id) {
    const data = await api("GET", "/v1/contacts/" + encodeURIComponent(id) + "/notes?limit=100");
    if (id !== openId) return;
    notes.replaceChildren();
    for (const note of data.data) {
      const item = el("li", "note");
      item.setAttribute("data-testid", "contact-note");
      item.dataset.noteId = note.id;
      item.append(el("span", "text", note.text));
      const when = new Date(note.created_at).toLocaleString(window.Console.lang, { dateStyle: "short", timeStyle: "short" });
      item.append(el("span", "meta muted", t("{author}, {when}", { author: await authorOf(note.author), when })));
      if (canWrite && (role === "admin" || note.author === me)) {
        const remove = el("button", "link", t("Delete"));
        remove.type = "button";
        remove.setAttribute("data-testid", "note-delete");
        remove.setAttribute("aria-label", t("Delete the note"));
        remove.addEventListener("click", async () => {
          try {
            await api("DELETE", "/v1/contacts/" + encodeURIComponent(id) + "/notes/" + encodeURIComponent(note.id));
            await loadNotes(id);
          } catch (error) {
            noteStatus.textContent = error.message;
          }
        });
        item.append(" ", remove);
      }
      notes.append(item);
    }
    if (!data.data.length) notes.append(el("li", "muted", t("No notes yet.")));
  }

  if (canWrite) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!openId) return;
      saveStatus.textContent = "";
      try {
        const body = {
          tags: parseTags(tags.value),
          attributes: parseAttributes(attributes.value),
          marketing_opt_out: optOut.checked,
        };
        await api("PATCH", "/v1/contacts/" + encodeURIComponent(openId), body);
        await open(openId);
        saveStatus.textContent = t("Saved.");
      } catch (error) {
        const where = error.fields && error.fields.length ? " (" + error.fields.map((f) => f.path + ": " + f.message).join("; ") + ")" : "";
        saveStatus.textContent = error.message + where;
      }
    });

    noteForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = noteText.value.trim();
      if (!text || !openId) return;
      noteStatus.textContent = "";
      try {
        await api("POST", "/v1/contacts/" + encodeURIComponent(openId) + "/notes", { text });
        noteText.value = "";
        await loadNotes(openId);
      } catch (error) {
        noteStatus.textContent = error.message;
      }
    });

    importForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = importFile.files[0];
      if (!file) return;
      importResult.replaceChildren();
      let rows;
      try {
        rows = parseCsv(await file.text());
      } catch (error) {
        importResult.append(el("li", "error", error.message));
        return;
      }
      let made = 0;
      const problems = [];
      for (const [index, row] of rows.entries()) {
        try {
          await api("POST", "/v1/contacts", row, { "Idempotency-Key": newKey() });
          made += 1;
        } catch (error) {
          const where = error.fields && error.fields.length ? " (" + error.fields.map((f) => f.path).join(", ") + ")" : "";
          problems.push(t("Row {row}: {problem}", { row: index + 2, problem: error.message + where }));
        }
      }
      const summary = el("li", "", t("{made} imported, {refused} refused.", { made, refused: problems.length }));
      summary.setAttribute("data-testid", "import-summary");
      importResult.append(summary);
      for (const problem of problems) importResult.append(el("li", "error", problem));
      await refresh();
    });
  }

  // CSV (RFC 4180: quotes, doubled quotes, commas and newlines inside quotes). The header
  // names the columns: wa_id (required), name, tags (separated by ";"); any other column
  // is an attribute.
  function parseCsv(text) {
    const records = [];
    let field = "", record = [], quoted = false;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (quoted) {
        if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
        else if (ch === '"') quoted = false;
        else field += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === ",") { record.push(field); field = ""; }
      else if (ch === "\n" || ch === "\r") {
        if (ch === "\r" && text[i + 1] === "\n") i++;
        record.push(field); field = "";
        if (record.some((f) => f !== "")) records.push(record);
        record = [];
      } else field += ch;
    }
    record.push(field);
    if (record.some((f) => f !== "")) records.push(record);
    if (!records.length) throw new Error(t("The file is empty."));
    const header = records[0].map((h) => h.trim().toLowerCase());
    if (!header.includes("wa_id")) throw new Error(t("The first line must name the columns, wa_id among them."));
    return records.slice(1).map((values) => {
      const row = { wa_id: "", attributes: {} };
      header.forEach((name, i) => {
        const value = (values[i] || "").trim();
        if (name === "wa_id") row.wa_id = value.replace(/^\+/, "");
        else if (name === "name") row.name = value;
        else if (name === "tags") row.tags = value.split(";").map((t) => t.trim()).filter(Boolean);
        else if (name && value) row.attributes[name] = value;
      });
      return row;
    });
  }

  let timer = null;
  for (const input of [search, tagFilter]) {
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => refresh().catch(() => {}), 250);
    });
  }
  refresh().catch((error) => console.warn("contacts failed", error.message));
})();
