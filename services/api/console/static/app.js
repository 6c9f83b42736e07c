// The console's inbox: plain JavaScript over the public /v1 API, with the session cookie
// (and the session's CSRF token on writes). Live: the server's events (/console/events) say
// when the read models moved, and the page reads again; a slow poll covers a lost stream.
// Customers' names and words are untrusted: they are only ever set as text (textContent),
// never as HTML.
"use strict";

(function () {
  const body = document.body;
  const me = body.dataset.userId;
  const role = body.dataset.role;
  const canWrite = role === "admin" || role === "agent";
  const POLL_MS = 5000;
  const t = window.Console.t;
  const STATE_NAMES = {
    bot: t("Bot"),
    waiting: t("Waiting for a person"),
    agent: t("With a person"),
    closed: t("Closed"),
  };

  const list = document.getElementById("inbox-list");
  const empty = document.getElementById("inbox-empty");
  const filter = document.getElementById("state-filter");
  const mine = document.getElementById("mine-filter");
  const numberFilter = document.getElementById("number-filter");
  const tagFilter = document.getElementById("tag-filter");
  const pane = document.getElementById("conversation");
  const title = document.getElementById("conversation-title");
  const stateBadge = document.getElementById("conversation-state");
  const assignee = document.getElementById("conversation-assignee");
  const takeOver = document.getElementById("take-over");
  const handBack = document.getElementById("hand-back");
  const closeButton = document.getElementById("close-conversation");
  const messages = document.getElementById("messages");
  const reply = document.getElementById("reply");
  const input = document.getElementById("reply-input");
  const replyError = document.getElementById("reply-error");
  const replyFile = document.getElementById("reply-file");
  const assignTo = document.getElementById("assign-to");
  const assignLabel = document.getElementById("assign-label");
  // Delivery ticks: what each status looks like and says (to screen readers too).
  const TICKS = {
    queued: ["\u25F7", t("queued")],
    sent: ["\u2713", t("sent")],
    delivered: ["\u2713\u2713", t("delivered")],
    read: ["\u2713\u2713", t("read")],
    failed: ["\u26A0", t("failed")],
  };
  let people = [];
  const templateForm = document.getElementById("template-reply");
  const templateSelect = document.getElementById("template-select");
  const templateVars = document.getElementById("template-vars");
  const templatePreview = document.getElementById("template-preview");
  const templateError = document.getElementById("template-error");
  let templates = null; // the business's approved templates, read when first needed

  let openId = null;
  let conversations = [];
  let lastInbox = "";
  let lastMessages = "";

  if (!canWrite) {
    // A viewer reads; the server refuses their writes anyway.
    for (const el of [takeOver, handBack, closeButton, reply, assignTo, assignLabel, templateForm]) el.remove();
  }

  // The /v1 calls are common.js's; a reply carries an Idempotency-Key, so a repeated click
  // or a retried request is one message.
  const el = window.Console.el;
  function api(method, path, payload) {
    const once =
      method === "POST" && path === "/v1/messages" ? { "Idempotency-Key": window.Console.newKey() } : undefined;
    return window.Console.api(method, path, payload, once);
  }

  // A file for Meta, through the api (`POST /v1/media`, the session's cookie and token).
  async function upload(file, number) {
    const response = await fetch("/v1/media?phone_number_id=" + encodeURIComponent(number), {
      method: "POST",
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "X-CSRF-Token": body.dataset.csrf,
        "Content-Type": file.type || "application/octet-stream",
      },
      body: file,
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(data && data.error ? data.error.message : response.statusText);
    }
    return data;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return date.toLocaleString(window.Console.lang, { dateStyle: "short", timeStyle: "short" });
  }

  function nameOf(userId) {
    const person = people.find((p) => p.id === userId);
    return person ? person.name : userId;
  }

  async function loadPeople() {
    const response = await fetch("/console/colleagues", { credentials: "same-origin" });
    if (!response.ok) return;
    people = (await response.json()).data;
    for (const person of people) {
      const option = el("option", "", person.id === me ? t("{name} (you)", { name: person.name }) : person.name);
      option.value = person.id;
      assignTo.append(option);
    }
  }

  async function loadTemplates() {
    templates = [];
    const data = await api("GET", "/v1/templates?status=APPROVED&limit=200");
    templates = data.data;
    for (const [i, tpl] of templates.entries()) {
      const option = el("option", "", tpl.name + " (" + tpl.language + ", " + tpl.category.toLowerCase() + ")");
      option.value = String(i);
      templateSelect.append(option);
    }
  }

  // What a template asks for (its header, body and buttons): templates.js, as campaigns.
  const { slots, bodyText } = window.ConsoleTemplates;

  function chosenTemplate() {
    return templateSelect.value === "" ? null : templates[Number(templateSelect.value)];
  }

  function renderPreview() {
    const chosen = chosenTemplate();
    let text = chosen ? bodyText(chosen) : "";
    for (const input of templateVars.querySelectorAll("input")) {
      const name = input.dataset.variable;
      if (name.includes(".") || name === "header") continue; // not the body's
      const value = input.value || "{{" + name + "}}";
      text = text.split(new RegExp("\\{\\{\\s*" + name + "\\s*\\}\\}")).join(value);
    }
    templatePreview.textContent = text;
  }

  function ticks(m) {
    const [mark, label] = TICKS[m.status] || ["", m.status];
    const node = el("span", "ticks ticks-" + m.status, mark);
    node.setAttribute("data-testid", "message-status");
    node.dataset.status = m.status;
    node.setAttribute("role", "img");
    let said = label;
    if (m.status === "failed" && m.error) {
      said = t("failed: {reason}", {
        reason: m.error.title + (m.error.code != null ? " (" + m.error.code + ")" : ""),
      });
      node.append(el("span", "reason", " " + said));
    }
    node.setAttribute("aria-label", said);
    node.title = said;
    return node;
  }

  function customerOf(conversation) {
    const contact = conversation.contact || {};
    return contact.name || contact.wa_id || contact.user_id || conversation.id;
  }

  function renderInbox() {
    const key = JSON.stringify([conversations, openId]);
    if (key === lastInbox) return;
    lastInbox = key;
    // A refresh must not take the keyboard's place in the list away.
    const focused = list.contains(document.activeElement)
      ? document.activeElement.closest("[data-conversation-id]").dataset.conversationId : null;
    list.replaceChildren();
    empty.hidden = conversations.length > 0;
    for (const c of conversations) {
      const item = el("li", "inbox-item" + (c.id === openId ? " open" : ""));
      item.setAttribute("data-testid", "inbox-item");
      item.dataset.conversationId = c.id;
      const button = el("button", "open");
      button.type = "button";
      button.setAttribute("aria-current", c.id === openId ? "true" : "false");
      const top = el("span", "line");
      top.append(el("strong", "name", customerOf(c)));
      const badge = el("span", "state state-" + c.state, STATE_NAMES[c.state] || c.state);
      badge.dataset.state = c.state;
      top.append(badge);
      if (c.unread > 0) top.append(el("span", "unread", String(c.unread)));
      button.append(top);
      button.append(el("span", "preview", c.last_message_preview || ""));
      button.append(el("span", "time muted", when(c.last_message_at)));
      button.addEventListener("click", () => open(c.id));
      item.append(button);
      list.append(item);
      if (c.id === focused) button.focus();
    }
  }

  function renderConversation(c, history) {
    pane.hidden = false;
    title.textContent = customerOf(c);
    stateBadge.dataset.state = c.state;
    stateBadge.className = "state state-" + c.state;
    stateBadge.textContent = STATE_NAMES[c.state] || c.state;
    assignee.textContent = c.assignee
      ? (c.assignee === me ? t("assigned to you") : t("assigned to {name}", { name: nameOf(c.assignee) }))
      : "";
    if (canWrite) {
      if (document.activeElement !== assignTo) assignTo.value = c.assignee || "";
      // Outside the customer's 24 h window only a template may go: the picker instead.
      const closed = !c.window_open_until || new Date(c.window_open_until) <= new Date();
      reply.hidden = closed;
      templateForm.hidden = !closed;
      if (closed && templates === null) loadTemplates().catch(() => {});
      takeOver.hidden = c.state === "agent" && c.assignee === me;
      handBack.hidden = c.state === "bot";
      closeButton.hidden = c.state === "closed";
    }
    const key = JSON.stringify(history);
    if (key === lastMessages) return;
    lastMessages = key;
    messages.replaceChildren();
    for (const m of history) {
      const item = el("li", "message " + m.direction + " author-" + m.author);
      item.setAttribute("data-testid", "message");
      item.dataset.author = m.author;
      const who = { customer: customerOf(c), bot: t("Bot"), agent: t("Agent"), business: t("Business") }[m.author] || m.author;
      item.append(el("span", "who", who));
      if (m.media && m.media.expired) {
        item.append(el("span", "muted media-expired", t("The file was deleted after the business's retention period.")));
      } else if (m.media && m.media.url) item.append(mediaOf(m));
      item.append(el("span", "text", m.text || (m.media ? "" : "[" + m.type + "]")));
      const meta = el("span", "meta muted", when(m.created_at));
      if (m.direction === "outbound" && m.status) {
        item.dataset.status = m.status;
        meta.append(" ", ticks(m));
      }
      item.append(meta);
      messages.append(item);
    }
    messages.scrollTop = messages.scrollHeight;
  }

  // A message's file, served by the api to this session only (never Meta's expiring URL):
  // images shown, voice notes and audio playable, videos played, anything else downloaded.
  function mediaOf(m) {
    const url = m.media.url;
    const kind = m.media.kind;
    let node;
    if (kind === "image" || kind === "sticker") {
      node = document.createElement("img");
      node.alt = m.text || kind;
      node.loading = "lazy";
    } else if (kind === "audio" || kind === "voice" || kind === "video") {
      node = document.createElement(kind === "video" ? "video" : "audio");
      node.controls = true;
      node.preload = "none";
    } else {
      node = el("a", "", t("Download {kind}", { kind: t(kind || "file") }));
      node.href = url;
      node.setAttribute("download", "");
    }
    if (node.tagName !== "A") node.src = url;
    node.classList.add("media");
    node.setAttribute("data-testid", "message-media");
    node.dataset.kind = kind;
    return node;
  }

  async function allMessages(id) {
    let out = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const path = "/v1/conversations/" + encodeURIComponent(id) + "/messages?limit=200" +
        (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const data = await api("GET", path);
      out = out.concat(data.data);
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    return out;
  }

  async function refreshInbox() {
    const state = filter.value;
    const tag = tagFilter.value.trim();
    const query = "?limit=100" + (state ? "&state=" + encodeURIComponent(state) : "") +
      (mine.checked ? "&assignee=" + encodeURIComponent(me) : "") +
      (numberFilter.value ? "&phone_number_id=" + encodeURIComponent(numberFilter.value) : "") +
      (tag ? "&tag=" + encodeURIComponent(tag) : "");
    const data = await api("GET", "/v1/conversations" + query);
    conversations = data.data;
    renderInbox();
  }

  async function refreshOpen() {
    if (!openId) return;
    const id = openId;
    const [c, history] = await Promise.all([
      api("GET", "/v1/conversations/" + encodeURIComponent(id)),
      allMessages(id),
    ]);
    if (id !== openId) return;
    if (canWrite && c.unread > 0) {
      await api("POST", "/v1/conversations/" + encodeURIComponent(id) + "/read");
    }
    renderConversation(c, history);
  }

  async function open(id) {
    openId = id;
    lastMessages = "";
    replyError.textContent = "";
    renderInbox();
    await refreshOpen();
    if (canWrite) input.focus();
  }

  async function change(action, payload) {
    if (!openId) return;
    replyError.textContent = "";
    try {
      await api("POST", "/v1/conversations/" + encodeURIComponent(openId) + "/" + action, payload);
      await Promise.all([refreshOpen(), refreshInbox()]);
    } catch (error) {
      replyError.textContent = error.message;
    }
  }

  if (canWrite) {
    takeOver.addEventListener("click", () => change("handoff", { assignee: me }));
    assignTo.addEventListener("change", () => {
      // Nobody: the conversation waits for a person (still not the bot's).
      change("handoff", assignTo.value ? { assignee: assignTo.value } : {});
    });
    handBack.addEventListener("click", () => change("release"));
    closeButton.addEventListener("click", () => change("close"));
    reply.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      const file = replyFile.files[0];
      if ((!text && !file) || !openId) return;
      const dot = openId.indexOf(".");
      const number = openId.slice(0, dot);
      const customer = openId.slice(dot + 1);
      replyError.textContent = "";
      try {
        let captioned = false;
        if (file) {
          // The file goes to Meta first (the api uploads it), then the message sends it.
          const uploaded = await upload(file, number);
          const media = { id: uploaded.id };
          if (text && ["image", "video", "document"].includes(uploaded.kind)) {
            media.caption = text;
            captioned = true;
          }
          if (uploaded.kind === "document") media.filename = file.name;
          await api("POST", "/v1/messages", {
            phone_number_id: number, to: customer, type: uploaded.kind, [uploaded.kind]: media,
          });
          replyFile.value = "";
        }
        if (text && !captioned) {
          await api("POST", "/v1/messages", {
            phone_number_id: number,
            to: customer,
            type: "text",
            text: { body: text },
          });
        }
        input.value = "";
        await refreshOpen();
      } catch (error) {
        replyError.textContent = error.code === "window_closed"
          ? t("The customer's 24 hour window is closed: only a template can be sent.")
          : error.message;
      }
    });
    templateSelect.addEventListener("change", () => {
      templateVars.replaceChildren();
      templateError.textContent = "";
      const chosen = chosenTemplate();
      if (chosen) {
        // One labelled field per variable: the header's, the body's and the buttons'.
        slots(chosen).forEach((slot) => {
          const id = "template-var-" + slot.variable.replace(/\./g, "-");
          const label = el("label", "", slot.label);
          label.htmlFor = id;
          const field = el("input", "");
          field.id = id;
          field.type = "text";
          field.dataset.variable = slot.variable;
          field.setAttribute("data-testid", "template-variable");
          if (slot.unsupported) field.disabled = true;
          field.addEventListener("input", renderPreview);
          templateVars.append(label, field);
        });
      }
      renderPreview();
    });
    templateForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = chosenTemplate();
      if (!chosen || !openId) return;
      // The variables as the API takes them: it fills the header, body and buttons.
      const variables = {};
      for (const input of templateVars.querySelectorAll("input:not([disabled])")) {
        variables[input.dataset.variable] = input.value;
      }
      const template = { name: chosen.name, language: { code: chosen.language } };
      if (Object.keys(variables).length) template.variables = variables;
      const dot = openId.indexOf(".");
      templateError.textContent = "";
      try {
        await api("POST", "/v1/messages", {
          phone_number_id: openId.slice(0, dot),
          to: openId.slice(dot + 1),
          type: "template",
          template,
        });
        templateSelect.value = "";
        templateVars.replaceChildren();
        renderPreview();
        await refreshOpen();
      } catch (error) {
        templateError.textContent = error.message;
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        reply.requestSubmit();
      }
    });
  }
  // The keyboard: Up and Down move between the inbox's conversations, Home and End to the
  // ends, Enter opens one (a button), and the reply box has the focus once it is open.
  list.addEventListener("keydown", (event) => {
    const buttons = [...list.querySelectorAll("button.open")];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: buttons.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    buttons[Math.max(0, Math.min(buttons.length - 1, to))].focus();
  });
  filter.addEventListener("change", () => refreshInbox());
  mine.addEventListener("change", () => refreshInbox());
  numberFilter.addEventListener("change", () => refreshInbox());
  let typing = null;
  tagFilter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => refreshInbox(), 250);
  });
  // The business's numbers for the filter (by their display number, else their id).
  api("GET", "/v1/numbers?limit=100").then((data) => {
    for (const n of data.data) {
      const option = el("option", "", n.display_phone_number || n.phone_number_id);
      option.value = n.phone_number_id;
      numberFilter.append(option);
    }
  }).catch(() => {});

  // One refresh at a time; a change announced during one makes one more after it.
  let running = false;
  let again = false;
  let timer = null;
  async function refresh() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    clearTimeout(timer);
    try {
      await Promise.all([refreshInbox(), refreshOpen()]);
    } catch (error) {
      if (error.message !== "signed out") console.warn("console refresh failed", error.message);
    } finally {
      running = false;
      timer = setTimeout(refresh, POLL_MS);
      if (again) {
        again = false;
        refresh();
      }
    }
  }
  if (window.EventSource) {
    const events = new EventSource("/console/events");
    events.addEventListener("changed", () => refresh());
  }
  (canWrite ? loadPeople() : Promise.resolve()).catch(() => {}).finally(() => {
    // A link from another page (a contact's conversations) opens one: /console/#<id>.
    const wanted = decodeURIComponent(window.location.hash.slice(1));
    if (wanted) open(wanted).catch(() => {});
    refresh();
  });
})();
