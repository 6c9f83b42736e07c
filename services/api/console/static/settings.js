// The settings page (admins): numbers, API keys, console users and CRM webhook endpoints
// with their delivery logs, all through the /v1 admin routes. Names, descriptions, URLs and
// emails were typed by people: only ever set as text. A new secret is shown once, in a
// read-only field, and forgotten by the page when "Done" is pressed.
"use strict";

(function () {
  const { api, el, newKey, t, me, lang } = window.Console;
  const $ = (id) => document.getElementById(id);
  // Codes the API answers, in the user's language (each text a literal: a test finds them).
  const ROLES = { admin: t("admin"), agent: t("agent"), viewer: t("viewer") };
  const STATES = {
    pending: t("pending"), succeeded: t("succeeded"), dead: t("dead"), cancelled: t("cancelled"),
  };

  function when(iso) {
    return iso ? new Date(iso).toLocaleString(lang) : "";
  }

  function reason(error) {
    const where = error.fields && error.fields.length
      ? " (" + error.fields.map((f) => f.path + ": " + f.message).join("; ") + ")" : "";
    return t("Refused: {reason}", { reason: error.message + where });
  }

  function say(status, text) {
    status.textContent = text;
  }

  function button(text, testid, onClick) {
    const b = el("button", "small", text);
    b.type = "button";
    if (testid) b.setAttribute("data-testid", testid);
    b.addEventListener("click", onClick);
    return b;
  }

  // An action that cannot be undone asks in place: the cell's buttons give way to the
  // question, "Yes" and "Cancel" (no window.confirm: it blocks the page and cannot be styled).
  function confirmIn(cell, question, yes, action) {
    const kept = Array.from(cell.childNodes);
    const ask = el("span", "confirm");
    ask.setAttribute("role", "group");
    ask.append(el("span", "", question + " "));
    const cancel = button(t("Cancel"), "confirm-no", () => {
      cell.replaceChildren(...kept);
      const first = cell.querySelector("button");
      if (first) first.focus();
    });
    const go = button(yes, "confirm-yes", async () => {
      go.disabled = true;
      cancel.disabled = true;
      try {
        await action();
      } finally {
        if (cell.isConnected) cell.replaceChildren(...kept);
      }
    });
    ask.append(go, " ", cancel);
    cell.replaceChildren(ask);
    go.focus();
  }

  // Field errors of a 422 go next to their fields; anything else to the form's status.
  function showErrors(form, status, error) {
    let placed = false;
    for (const f of error.fields || []) {
      const name = (f.path || "").split(/[.[]/)[0];
      const spot = form.querySelector('[data-field="' + CSS.escape(name) + '"]');
      if (spot) {
        spot.textContent = f.message;
        placed = true;
      }
    }
    say(status, placed ? t("Some fields need a change.") : reason(error));
  }

  // A form's submit button is off while its request is out: a double click makes one thing.
  function submitting(handler) {
    return async (event) => {
      event.preventDefault();
      const submit = event.target.querySelector("button[type=submit]");
      if (submit.disabled) return;
      submit.disabled = true;
      try {
        await handler(event);
      } finally {
        submit.disabled = false;
      }
    };
  }

  function clearErrors(form) {
    for (const spot of form.querySelectorAll(".field-error")) spot.textContent = "";
  }

  function secretBox(prefix) {
    const box = $(prefix + "-secret-box");
    const field = $(prefix + "-secret");
    $(prefix + "-secret-copy").addEventListener("click", async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (error) {
        document.execCommand("copy");
      }
      say($(prefix + "-status"), t("Copied."));
    });
    $(prefix + "-secret-done").addEventListener("click", () => {
      field.value = "";
      box.hidden = true;
    });
    field.addEventListener("focus", () => field.select());
    return (secret) => {
      field.value = secret;
      box.hidden = false;
      field.focus();
    };
  }

  function cells(row, values) {
    for (const value of values) {
      const cell = el("td", "");
      if (value instanceof Node) cell.append(value);
      else cell.textContent = value;
      row.append(cell);
    }
    return row;
  }

  // --- numbers --------------------------------------------------------------------------
  async function numbers() {
    const data = await api("GET", "/v1/numbers?limit=200");
    const body = $("numbers");
    body.replaceChildren();
    $("numbers-empty").hidden = data.data.length > 0;
    for (const n of data.data) {
      const row = cells(el("tr", ""), [
        n.display_phone_number, n.phone_number_id, n.waba_id,
        String(n.send_rate_per_second), n.own_app ? t("its own") : t("the deployment's"),
      ]);
      row.setAttribute("data-testid", "number-row");
      body.append(row);
    }
  }

  // --- API keys -------------------------------------------------------------------------
  const keyStatus = $("key-status");
  const showKey = secretBox("key");

  async function keys() {
    const data = await api("GET", "/v1/api-keys?limit=200");
    const body = $("keys");
    body.replaceChildren();
    $("keys-empty").hidden = data.data.length > 0;
    for (const k of data.data) {
      const actions = el("td", "");
      if (k.revoked_at) actions.textContent = t("revoked {time}", { time: when(k.revoked_at) });
      else {
        actions.append(button(t("Revoke"), "key-revoke", () =>
          confirmIn(actions, t("Revoke the key {name}?", { name: k.name }), t("Yes, revoke"), async () => {
            try {
              await api("DELETE", "/v1/api-keys/" + encodeURIComponent(k.id));
              say(keyStatus, t("The key {name} is revoked.", { name: k.name }));
              await keys();
            } catch (error) {
              say(keyStatus, reason(error));
            }
          })));
      }
      const row = cells(el("tr", ""), [k.name, ROLES[k.role] || k.role, when(k.created_at)]);
      row.append(actions);
      row.setAttribute("data-testid", "key-row");
      row.dataset.keyId = k.id;
      body.append(row);
    }
  }

  $("key-form").addEventListener("submit", submitting(async (event) => {
    const form = event.target;
    clearErrors(form);
    say(keyStatus, "");
    try {
      const made = await api("POST", "/v1/api-keys",
        { name: $("key-name").value.trim(), role: $("key-role").value },
        { "Idempotency-Key": newKey() });
      form.reset();
      showKey(made.key);
      say(keyStatus, t("The key {name} is issued.", { name: made.name }));
      await keys();
    } catch (error) {
      showErrors(form, keyStatus, error);
    }
  }));

  // --- users ----------------------------------------------------------------------------
  const userStatus = $("user-status");

  async function users() {
    const data = await api("GET", "/v1/users?limit=200");
    const body = $("users");
    body.replaceChildren();
    for (const u of data.data) {
      const who = u.name || u.email;
      const role = el("select", "");
      role.setAttribute("aria-label", t("Role of {name}", { name: who }));
      role.setAttribute("data-testid", "user-role-select");
      for (const code of ["admin", "agent", "viewer"]) {
        const option = el("option", "", ROLES[code]);
        option.value = code;
        option.selected = code === u.role;
        role.append(option);
      }
      const actions = el("td", "");
      if (u.id === me) {
        role.disabled = true;  // an admin does not take their own role away by a slip
        actions.textContent = t("you");
      } else {
        role.addEventListener("change", async () => {
          try {
            await api("PATCH", "/v1/users/" + encodeURIComponent(u.id), { role: role.value });
            say(userStatus, t("{name} is now {role}.", { name: who, role: ROLES[role.value] }));
          } catch (error) {
            role.value = u.role;
            say(userStatus, reason(error));
          }
          await users();
        });
        actions.append(button(t("Delete"), "user-delete", () =>
          confirmIn(actions, t("Delete the user {name}?", { name: who }), t("Yes, delete"), async () => {
            try {
              await api("DELETE", "/v1/users/" + encodeURIComponent(u.id));
              say(userStatus, t("{name} is deleted.", { name: who }));
              await users();
            } catch (error) {
              say(userStatus, reason(error));
            }
          })));
      }
      const row = cells(el("tr", ""), [u.name, u.email, role, u.language === "it" ? "Italiano" : "English"]);
      row.append(actions);
      row.setAttribute("data-testid", "user-row");
      row.dataset.userId = u.id;
      body.append(row);
    }
  }

  $("user-form").addEventListener("submit", submitting(async (event) => {
    const form = event.target;
    clearErrors(form);
    say(userStatus, "");
    try {
      const made = await api("POST", "/v1/users", {
        email: $("user-email").value.trim(),
        name: $("user-name").value.trim(),
        role: $("user-role").value,
        password: $("user-password").value,
        language: $("user-language").value,
      }, { "Idempotency-Key": newKey() });
      form.reset();
      say(userStatus, t("{name} can sign in now.", { name: made.name || made.email }));
      await users();
    } catch (error) {
      showErrors(form, userStatus, error);
    }
  }));

  // --- CRM webhooks ---------------------------------------------------------------------
  const endpointStatus = $("endpoint-status");
  const showSecret = secretBox("endpoint");
  const panel = $("deliveries-panel");
  const deliveryStatus = $("deliveries-status");
  let openEndpoint = null;
  let poll = null;

  async function eventTypes() {
    const data = await api("GET", "/v1/webhooks/event-types");
    const list = $("event-type-list");
    list.replaceChildren();
    for (const type of data.data) {
      const label = el("label", "check");
      const box = el("input", "");
      box.type = "checkbox";
      box.value = type.type;
      box.name = "event_type";
      label.append(box, " ", el("code", "", type.type), " ", el("span", "muted", type.description));
      list.append(label);
    }
  }

  async function endpoint(id, path, payload, done) {
    try {
      const answer = await api("POST", "/v1/webhooks/endpoints/" + encodeURIComponent(id) + path, payload);
      if (answer && answer.secret) showSecret(answer.secret);
      say(endpointStatus, done);
      await endpoints();
    } catch (error) {
      say(endpointStatus, reason(error));
    }
  }

  async function endpoints() {
    const data = await api("GET", "/v1/webhooks/endpoints?limit=200");
    const body = $("endpoints");
    body.replaceChildren();
    $("endpoints-empty").hidden = data.data.length > 0;
    for (const e of data.data) {
      const actions = el("td", "actions");
      actions.append(button(t("Deliveries"), "endpoint-deliveries", () => openDeliveries(e)));
      if (e.enabled) {
        actions.append(button(t("Disable"), "endpoint-disable", () =>
          endpoint(e.id, "/disable", {}, t("Disabled: nothing is sent to it."))));
      } else {
        actions.append(button(t("Enable"), "endpoint-enable", () =>
          endpoint(e.id, "/enable", undefined, t("Enabled: its events are sent again."))));
      }
      actions.append(button(t("Rotate the secret"), "endpoint-rotate", () =>
        confirmIn(actions, t("A new secret (the old one signs for a while yet)?"), t("Yes, rotate"),
          () => endpoint(e.id, "/rotate-secret", undefined, t("A new secret is made.")))));
      actions.append(button(t("Delete"), "endpoint-delete", () =>
        confirmIn(actions, t("Delete this endpoint and cancel its pending deliveries?"), t("Yes, delete"), async () => {
          try {
            await api("DELETE", "/v1/webhooks/endpoints/" + encodeURIComponent(e.id));
            say(endpointStatus, t("The endpoint is deleted."));
            if (openEndpoint && openEndpoint.id === e.id) closeDeliveries();
            await endpoints();
          } catch (error) {
            say(endpointStatus, reason(error));
          }
        })));
      const state = el("span", "state " + (e.enabled ? "state-bot" : "state-closed"),
        e.enabled ? t("enabled") : t("disabled"));
      state.dataset.state = e.enabled ? "enabled" : "disabled";
      const row = cells(el("tr", ""), [
        e.url, e.description, e.event_types.length ? e.event_types.join(", ") : t("every event"), state,
      ]);
      row.append(actions);
      row.setAttribute("data-testid", "endpoint-row");
      row.dataset.endpointId = e.id;
      body.append(row);
    }
  }

  $("endpoint-form").addEventListener("submit", submitting(async (event) => {
    const form = event.target;
    clearErrors(form);
    say(endpointStatus, "");
    const chosen = Array.from(form.querySelectorAll("input[name=event_type]:checked")).map((b) => b.value);
    const payload = { url: $("endpoint-url").value.trim(), description: $("endpoint-description").value };
    if (chosen.length) payload.event_types = chosen;
    try {
      const made = await api("POST", "/v1/webhooks/endpoints", payload, { "Idempotency-Key": newKey() });
      form.reset();
      showSecret(made.secret);
      say(endpointStatus, t("The endpoint is added."));
      await endpoints();
    } catch (error) {
      showErrors(form, endpointStatus, error);
    }
  }));

  function openDeliveries(e) {
    openEndpoint = e;
    panel.hidden = false;
    $("deliveries-title").textContent = t("Deliveries to {url}", { url: e.url });
    say(deliveryStatus, "");
    deliveries().catch((error) => say(deliveryStatus, reason(error)));
    panel.scrollIntoView({ block: "nearest" });
  }

  function closeDeliveries() {
    openEndpoint = null;
    panel.hidden = true;
    clearTimeout(poll);
  }

  // The log reads itself again every few seconds while it is open: deliveries move on
  // their own (attempts, retries, the CRM's answer).
  async function deliveries() {
    clearTimeout(poll);
    const e = openEndpoint;
    if (!e) return;
    try {
      const data = await api("GET", "/v1/webhooks/endpoints/" + encodeURIComponent(e.id) + "/deliveries?limit=50");
      if (e !== openEndpoint) return;
      const body = $("deliveries");
      body.replaceChildren();
      $("deliveries-empty").hidden = data.data.length > 0;
      for (const d of data.data) {
        const state = el("span", "delivery-state", STATES[d.state] || d.state);
        state.dataset.state = d.state;
        const last = d.last_status != null ? String(d.last_status) : (d.last_error || "");
        const actions = el("td", "");
        actions.append(button(t("Replay"), "delivery-replay", async () => {
          try {
            await api("POST", "/v1/webhooks/deliveries/" + encodeURIComponent(d.id) + "/replay");
            say(deliveryStatus, t("The delivery is sent again."));
            await deliveries();
          } catch (error) {
            say(deliveryStatus, reason(error));
          }
        }));
        const row = cells(el("tr", ""), [
          d.event_type, state, String(d.attempts), last, when(d.last_attempt_at || d.created_at),
        ]);
        row.append(actions);
        row.setAttribute("data-testid", "delivery-row");
        row.dataset.deliveryId = d.id;
        row.dataset.state = d.state;
        row.dataset.attempts = String(d.attempts);
        row.dataset.replays = String(d.replays);
        body.append(row);
      }
    } finally {
      if (e === openEndpoint) poll = setTimeout(() => deliveries().catch(() => {}), 3000);
    }
  }

  $("deliveries-refresh").addEventListener("click", () => deliveries().catch((error) => say(deliveryStatus, reason(error))));
  $("deliveries-close").addEventListener("click", closeDeliveries);
  $("deliveries-replay-dead").addEventListener("click", async () => {
    if (!openEndpoint) return;
    try {
      const answer = await api("POST", "/v1/webhooks/endpoints/" + encodeURIComponent(openEndpoint.id) + "/replay-dead");
      say(deliveryStatus, t("{count} dead deliveries sent again.", { count: answer.replayed }));
      await deliveries();
    } catch (error) {
      say(deliveryStatus, reason(error));
    }
  });

  for (const load of [numbers, keys, users, eventTypes, endpoints]) {
    load().catch((error) => console.warn("settings: " + load.name + " failed", error.message));
  }
})();
