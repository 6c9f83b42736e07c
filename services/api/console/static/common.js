// What the console's pages share: the /v1 calls with the session cookie (and the session's
// CSRF token on writes), and making elements whose text is set as text, never as HTML.
"use strict";

window.Console = (function () {
  const body = document.body;
  const csrf = body.dataset.csrf;
  // The page's catalogue (English text -> the user's language), a JSON data block.
  const block = document.getElementById("console-i18n");
  const catalogue = block ? JSON.parse(block.textContent || "{}") : {};

  // `text` in the user's language, its {placeholders} filled from `values`.
  function t(text, values) {
    const found = Object.prototype.hasOwnProperty.call(catalogue, text) ? catalogue[text] : text;
    // One pass: a value holding "{name}" (a colleague's, a campaign's) is not filled again.
    const given = values || {};
    return found.replace(/\{(\w+)\}/g, (whole, name) =>
      Object.prototype.hasOwnProperty.call(given, name) ? String(given[name]) : whole);
  }

  // The header's language choice applies as soon as it is picked (its button stays for
  // those who tab through).
  const language = document.getElementById("language");
  if (language) language.addEventListener("change", () => language.form.submit());

  async function api(method, path, payload, extraHeaders) {
    const headers = Object.assign({ Accept: "application/json" }, extraHeaders || {});
    if (method !== "GET") {
      headers["X-CSRF-Token"] = csrf;
      headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    if (response.status === 401) {
      window.location.assign("/console/sign-in");
      throw new Error("signed out");
    }
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error(data && data.error ? data.error.message : response.statusText);
      error.code = data && data.error ? data.error.code : "";
      error.fields = data && data.error && data.error.fields ? data.error.fields : [];
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function newKey() {
    return crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  }

  return {
    api,
    el,
    newKey,
    t,
    lang: body.dataset.lang || "en",
    role: body.dataset.role,
    me: body.dataset.userId,
    canWrite: body.dataset.role === "admin" || body.dataset.role === "agent",
  };
})();
