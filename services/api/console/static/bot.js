// The bot page: a number's definition in an editor, its validation problems shown at their
// line and path, the simulator beside it (the text being edited, nothing sent), and publish.
// Admins only, as the API's bot routes are.
"use strict";

(function () {
  const { api, el, t } = window.Console;
  const numberSelect = document.getElementById("bot-number");
  const editor = document.getElementById("bot-editor");
  const version = document.getElementById("bot-version");
  const problems = document.getElementById("bot-problems");
  const publish = document.getElementById("bot-publish");
  const checkButton = document.getElementById("bot-check");
  const status = document.getElementById("bot-status");
  const simForm = document.getElementById("sim-form");
  const simInput = document.getElementById("sim-input");
  const simLog = document.getElementById("sim-log");
  const simReset = document.getElementById("sim-reset");
  let said = []; // the simulated customer's messages so far (the simulator replays them)
  const STARTER = "version: 1\nlanguage: en\nrules:\n  - id: greeting\n    match: {any: [\"hi\", \"hello\"]}\n    reply: {text: \"Hi! How can I help?\"}\n";

  function number() {
    return encodeURIComponent(numberSelect.value);
  }

  // The line a path such as flows.support.steps[2].validate names in YAML written in block
  // style (the usual way): each key below its parent, each [n] the n-th "- " item of its
  // sequence. Where the rest is written inline ({regex: ...}) or cannot be found, the line
  // of the deepest part found; 0 when not even the first is (JSON: the path is shown).
  function lineOf(text, path) {
    const lines = text.split("\n");
    const parts = [];
    for (const piece of path.split(".")) {
      const m = piece.match(/^([^[\]]*)((?:\[\d+\])*)$/);
      if (!m) return 0;
      if (m[1]) parts.push({ key: m[1] });
      for (const idx of m[2].matchAll(/\[(\d+)\]/g)) parts.push({ index: Number(idx[1]) });
    }
    const rows = lines.map((raw, i) => {
      const body = raw.trimStart();
      const lead = raw.length - body.length;
      const dash = body.startsWith("- ") || body === "-";
      return { i, lead, dash, key: dash ? body.slice(2).trimStart() : body, keyLead: dash ? lead + 2 : lead, blank: !body || body.startsWith("#") };
    }).filter((r) => !r.blank);
    let from = 0; // the first row of the current node's block
    let parent = -1; // the current node's indentation: its block is deeper
    let sameLine = false; // an item: its first key is on the item's own line
    let line = 0;
    for (const part of parts) {
      let found = null;
      let itemLead = null;
      let seen = -1;
      let childLead = null;
      for (let r = from; r < rows.length; r++) {
        const row = rows[r];
        const first = sameLine && r === from;
        if (!first && (row.dash ? row.lead < parent || (part.key !== undefined && row.lead <= parent) : row.lead <= parent)) break;
        if (part.index !== undefined) {
          if (!row.dash) continue;
          if (itemLead === null) itemLead = row.lead;
          if (row.lead !== itemLead) continue;
          seen += 1;
          if (seen === part.index) {
            found = { r, lead: row.lead, item: true };
            break;
          }
        } else {
          const lead = first || row.dash ? row.keyLead : row.lead;
          if (childLead === null) childLead = lead;
          if (lead !== childLead) continue;
          if (row.key.startsWith(part.key + ":") || row.key.startsWith('"' + part.key + '":')) {
            found = { r, lead, item: false };
            break;
          }
        }
      }
      if (found === null) return line;
      line = rows[found.r].i + 1;
      if (found.item) {
        from = found.r;
        parent = found.lead;
        sameLine = true;
      } else {
        from = found.r + 1;
        parent = found.lead;
        sameLine = false;
      }
    }
    return line;
  }

  function showProblems(fields) {
    problems.replaceChildren();
    for (const given of fields) {
      // The simulator names the definition it was given: the path inside it is the same.
      const field = { path: (given.path || "").replace(/^definition\.?/, ""), message: given.message };
      const fromText = /^line (\d+)/.exec(field.message || "");
      const line = fromText ? Number(fromText[1]) : field.path ? lineOf(editor.value, field.path) : 0;
      const item = el("li", "problem");
      item.setAttribute("data-testid", "bot-problem");
      item.dataset.path = field.path || "";
      item.dataset.line = String(line);
      const where = (line ? t("line {line}", { line }) : "") + (line && field.path ? ", " : "") + (field.path || "");
      const button = el("button", "link", where || t("the document"));
      button.type = "button";
      button.addEventListener("click", () => goTo(line));
      item.append(button, el("span", "", ": " + field.message));
      problems.append(item);
    }
  }

  function goTo(line) {
    if (!line) return;
    const lines = editor.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    editor.focus();
    editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
  }

  async function load() {
    status.textContent = "";
    problems.replaceChildren();
    said = [];
    simLog.replaceChildren();
    const bot = await api("GET", "/v1/numbers/" + number() + "/bot");
    version.textContent = bot.version ? t("published version {version}", { version: bot.version }) : t("nothing published yet");
    editor.value = bot.source || (bot.definition ? JSON.stringify(bot.definition, null, 2) : STARTER);
  }

  function failed(error) {
    if (error.fields && error.fields.length) {
      showProblems(error.fields);
      status.textContent = t("The definition has problems: see the list.");
    } else {
      status.textContent = error.message;
    }
  }

  async function simulate(messages) {
    return api("POST", "/v1/numbers/" + number() + "/bot/simulate", {
      definition: editor.value,
      messages: messages.map((text) => ({ text })),
    });
  }

  function replyText(body) {
    const kind = body.type;
    const inner = body[kind] || {};
    if (kind === "text") return inner.body || "";
    if (kind === "interactive") {
      const buttons = ((inner.action || {}).buttons || []).map((b) => "[" + ((b.reply || {}).title || "") + "]");
      return [((inner.body || {}).text || ""), ...buttons].join(" ");
    }
    return "[" + kind + "]";
  }

  checkButton.addEventListener("click", async () => {
    problems.replaceChildren();
    status.textContent = "";
    try {
      await simulate(["hello"]);
      status.textContent = t("No problems found.");
    } catch (error) {
      failed(error);
    }
  });

  publish.addEventListener("click", async () => {
    problems.replaceChildren();
    status.textContent = "";
    try {
      const response = await fetch("/v1/numbers/" + number() + "/bot", {
        method: "PUT",
        credentials: "same-origin",
        headers: {
          "Content-Type": editor.value.trim().startsWith("{") ? "application/json" : "application/yaml",
          "X-CSRF-Token": document.body.dataset.csrf,
          Accept: "application/json",
        },
        body: editor.value,
      });
      const data = await response.json();
      if (!response.ok) {
        const error = new Error(data.error ? data.error.message : response.statusText);
        error.fields = data.error && data.error.fields ? data.error.fields : [];
        throw error;
      }
      version.textContent = t("published version {version}", { version: data.version });
      status.textContent = t("Published version {version}.", { version: data.version });
    } catch (error) {
      failed(error);
    }
  });

  simForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = simInput.value.trim();
    if (!text) return;
    problems.replaceChildren();
    status.textContent = "";
    try {
      const result = await simulate(said.concat([text]));
      said.push(text);
      simInput.value = "";
      const mine = el("li", "message inbound", text);
      mine.setAttribute("data-testid", "sim-customer");
      simLog.append(mine);
      const replies = result.replies[result.replies.length - 1] || [];
      for (const body of replies) {
        const item = el("li", "message outbound", replyText(body));
        item.setAttribute("data-testid", "sim-reply");
        simLog.append(item);
      }
      if (result.waiting) simLog.append(el("li", "muted", t("Handed off: the bot is silent now.")));
    } catch (error) {
      failed(error);
    }
  });
  simReset.addEventListener("click", () => {
    said = [];
    simLog.replaceChildren();
  });

  editor.addEventListener("keydown", (event) => {
    // Tab indents (YAML needs spaces); Escape then Tab leaves the editor, as usual.
    if (event.key === "Tab" && !event.shiftKey && !editor.dataset.escaped) {
      event.preventDefault();
      editor.setRangeText("  ", editor.selectionStart, editor.selectionEnd, "end");
    }
    editor.dataset.escaped = event.key === "Escape" ? "1" : "";
  });

  async function start() {
    const numbers = await api("GET", "/v1/numbers?limit=100");
    for (const n of numbers.data) {
      const option = el("option", "", n.display_phone_number ? n.display_phone_number + " (" + n.phone_number_id + ")" : n.phone_number_id);
      option.value = n.phone_number_id;
      numberSelect.append(option);
    }
    if (numbers.data.length) await load();
    else status.textContent = t("The business has no numbers yet.");
  }
  numberSelect.addEventListener("change", () => load().catch(failed));
  start().catch(failed);
})();
