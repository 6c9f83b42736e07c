// What a template asks for, as the API fills it from variables (shared/meta/templates.py):
// "1" or "first_name" for the body, "header.1" for a text header, "header" for a media
// header's link or id, "button.<index>" for a URL button's end or a copy-code button's
// code. Shared by the campaigns page's wizard and the inbox's template picker.
"use strict";

window.ConsoleTemplates = (function () {
  const { t } = window.Console;

  function placeholders(text) {
    const seen = [];
    for (const m of String(text || "").matchAll(/\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g)) {
      if (!seen.includes(m[1])) seen.push(m[1]);
    }
    return seen;
  }

  // The variables a template takes, keyed as the campaigns fill them
  // (shared/meta/templates.py: "1" or "first_name" for the body, "header.1" for a text
  // header, "header" for a media header's link or id, "button.<index>" for a button).
  function slots(tpl) {
    const out = [];
    for (const component of tpl.components || []) {
      const type = String(component.type || "").toUpperCase();
      if (type === "HEADER") {
        const format = String(component.format || "TEXT").toUpperCase();
        if (["IMAGE", "VIDEO", "DOCUMENT"].includes(format)) {
          out.push({ variable: "header", label: t("Header {kind}: a link or a media id", { kind: format.toLowerCase() }) });
        } else if (format === "LOCATION") {
          out.push({ variable: "header", label: t("Header location (campaigns cannot fill it)"), unsupported: true });
        } else {
          for (const name of placeholders(component.text)) {
            out.push({ variable: "header." + name, label: t("Header {{{name}}}", { name }) });
          }
        }
      } else if (type === "BODY") {
        for (const name of placeholders(component.text)) {
          out.push({ variable: name, label: t("Body {{{name}}}", { name }) });
        }
      } else if (type === "BUTTONS") {
        (component.buttons || []).forEach((button, index) => {
          const kind = String(button.type || "").toUpperCase();
          if (kind === "URL" && placeholders(button.url).length) {
            out.push({ variable: "button." + index, label: t("Button {n} ({text}): the end of its link", { n: index + 1, text: button.text || "" }) });
          } else if (kind === "COPY_CODE") {
            out.push({ variable: "button." + index, label: t("Button {n}: the code to copy", { n: index + 1 }) });
          }
        });
      }
    }
    return out;
  }

  function bodyText(tpl) {
    const body = (tpl.components || []).find((c) => String(c.type || "").toUpperCase() === "BODY");
    return body ? String(body.text || "") : "";
  }

  return { placeholders, slots, bodyText };
})();
