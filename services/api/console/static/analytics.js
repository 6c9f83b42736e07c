// The analytics page: GET /v1/analytics for the period and number chosen, drawn as bar
// charts in SVG made with DOM calls (no library, nothing inline: the CSP allows none).
// Each chart has its title (the section's heading), axis labels, a summary for screen
// readers (the SVG's role=img label) and its figures as a table. Campaign names are the
// business's text: set as text only.
"use strict";

(function () {
  const { api, el, t } = window.Console;
  const NS = "http://www.w3.org/2000/svg";
  const W = 640;
  const H = 260;
  const M = { top: 12, right: 12, bottom: 58, left: 60 };
  const form = document.getElementById("analytics-form");
  const from = document.getElementById("analytics-from");
  const to = document.getElementById("analytics-to");
  const number = document.getElementById("analytics-number");
  const status = document.getElementById("analytics-status");

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Four round steps from 0 to at least `value`: each 1, 2, 2.5 or 5 times a power of ten
  // (whole numbers only for counts).
  function axisStep(value, whole) {
    const wanted = Math.max(value, whole ? 4 : 0) / 4 || 1;
    const power = Math.pow(10, Math.floor(Math.log10(wanted)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      const step = m * power;
      if (step >= wanted && (!whole || Number.isInteger(step))) return step;
    }
    return 10 * power;
  }

  function tickText(value) {
    return Number.isInteger(value) ? String(value) : String(Math.round(value * 1000) / 1000);
  }

  // A bar chart: `categories` along x, one bar per series in each (values >= 0), y from 0.
  function barChart(o) {
    const root = svg("svg", {
      viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": o.summary, class: "chart-svg",
      focusable: "false",
    });
    root.append(svg("title", {}, o.summary));
    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const all = o.series.flatMap((s) => s.values);
    const max = 4 * axisStep(Math.max(0, ...all), !o.fractional);
    const axes = svg("g", { class: "axes", "aria-hidden": "true" });
    for (let i = 0; i <= 4; i++) {
      const value = (max * i) / 4;
      const y = M.top + ph - (ph * i) / 4;
      axes.append(svg("line", { x1: M.left, x2: M.left + pw, y1: y, y2: y, class: i ? "grid" : "axis" }));
      axes.append(svg("text", { x: M.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, tickText(value)));
    }
    axes.append(svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: M.top + ph, class: "axis" }));
    const band = pw / Math.max(1, o.categories.length);
    const every = Math.ceil(o.categories.length / 12); // labels that do not overlap
    o.categories.forEach((label, i) => {
      if (i % every) return;
      axes.append(svg("text", {
        x: M.left + band * (i + 0.5), y: M.top + ph + 16, "text-anchor": "middle", class: "tick",
      }, label));
    });
    axes.append(svg("text", { x: M.left + pw / 2, y: H - 8, "text-anchor": "middle", class: "axis-label" }, o.xLabel));
    axes.append(svg("text", {
      x: -(M.top + ph / 2), y: 16, transform: "rotate(-90)", "text-anchor": "middle", class: "axis-label",
    }, o.yLabel));
    root.append(axes);
    const bars = svg("g", { class: "bars" });
    const inner = band * 0.8;
    const width = inner / o.series.length;
    o.categories.forEach((label, i) => {
      o.series.forEach((s, j) => {
        const value = s.values[i] || 0;
        const h = (value / max) * ph;
        const bar = svg("rect", {
          x: M.left + band * i + (band - inner) / 2 + width * j, y: M.top + ph - h,
          width: Math.max(1, width - 1), height: h, class: "bar bar-" + s.kind,
        });
        bar.append(svg("title", {}, label + ", " + s.name + ": " + (s.text ? s.text[i] : value)));
        bars.append(bar);
      });
    });
    root.append(bars);
    return root;
  }

  function legend(series) {
    const list = el("ul", "legend");
    list.setAttribute("aria-hidden", "true"); // the table and the summary say the same
    for (const s of series) {
      const item = el("li", "");
      item.append(el("span", "swatch bar-" + s.kind), s.name);
      list.append(item);
    }
    return list;
  }

  function table(caption, headers, rows) {
    const node = el("table", "figures");
    node.append(el("caption", "", caption));
    const head = el("tr", "");
    for (const h of headers) {
      const th = el("th", "", h);
      th.scope = "col";
      head.append(th);
    }
    node.append(el("thead", ""));
    node.tHead.append(head);
    const body = el("tbody", "");
    for (const row of rows) {
      const tr = el("tr", "");
      row.forEach((cell, i) => {
        const td = el(i ? "td" : "th", "", String(cell));
        if (!i) td.scope = "row";
        tr.append(td);
      });
      body.append(tr);
    }
    node.append(body);
    return node;
  }

  // A chart's section: its figure (the chart, a legend) and the table in its <details>.
  function show(key, figure, figures) {
    const section = document.getElementById("chart-" + key);
    section.querySelector(".chart-figure").replaceChildren(...figure);
    const details = section.querySelector("details");
    for (const old of details.querySelectorAll("table, p")) old.remove();
    details.append(...figures);
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "-";
    if (ms < 1000) return t("{n} ms", { n: ms });
    if (ms < 60000) return t("{n} s", { n: (ms / 1000).toFixed(1) });
    if (ms < 3600000) return t("{n} min", { n: (ms / 60000).toFixed(1) });
    return t("{n} h", { n: (ms / 3600000).toFixed(1) });
  }

  function percent(rate) {
    return rate === null ? "-" : Math.round(rate * 1000) / 10 + "%";
  }

  function messages(data) {
    const days = data.messages_per_day;
    const inbound = days.reduce((n, d) => n + d.inbound, 0);
    const outbound = days.reduce((n, d) => n + d.outbound, 0);
    const busiest = days.reduce((b, d) => (d.inbound + d.outbound > b.inbound + b.outbound ? d : b), days[0]);
    const summary = inbound + outbound
      ? t("Messages per day from {from} to {to}: {inbound} received and {outbound} sent in all; the busiest day {day}, with {count}.", {
        from: data.period.from, to: data.period.to, inbound, outbound, day: busiest.date,
        count: busiest.inbound + busiest.outbound,
      })
      : t("No messages from {from} to {to}.", { from: data.period.from, to: data.period.to });
    const series = [
      { name: t("Received"), kind: "in", values: days.map((d) => d.inbound) },
      { name: t("Sent"), kind: "out", values: days.map((d) => d.outbound) },
    ];
    const chart = barChart({
      categories: days.map((d) => d.date.slice(5)), series, summary,
      xLabel: t("Day (UTC)"), yLabel: t("Messages"),
    });
    show("messages", [chart, legend(series)], [table(
      t("Messages per day (UTC)"), [t("Day"), t("Received"), t("Sent")],
      days.map((d) => [d.date, d.inbound, d.outbound]),
    )]);
  }

  function responses(data) {
    const bot = data.first_response.bot;
    const agent = data.first_response.agent;
    function said(who, r) {
      return r.count
        ? t("{who}: median {median}, 90th percentile {p90}, {count} responses.", {
          who, median: duration(r.median_ms), p90: duration(r.p90_ms), count: r.count,
        })
        : t("{who}: no response in the period.", { who });
    }
    const summary = said(t("The bot"), bot) + " " + said(t("Agents"), agent);
    const seconds = (ms) => (ms || 0) / 1000;
    const series = [
      { name: t("Median"), kind: "in", values: [seconds(bot.median_ms), seconds(agent.median_ms)],
        text: [duration(bot.median_ms), duration(agent.median_ms)] },
      { name: t("90th percentile"), kind: "out", values: [seconds(bot.p90_ms), seconds(agent.p90_ms)],
        text: [duration(bot.p90_ms), duration(agent.p90_ms)] },
    ];
    const chart = barChart({
      categories: [t("The bot"), t("Agents")], series, summary,
      xLabel: t("Who answered"), yLabel: t("Seconds"), fractional: true,
    });
    show("responses", [chart, legend(series)], [table(
      t("First response time"), [t("Who answered"), t("Median"), t("90th percentile"), t("Responses")],
      [[t("The bot"), duration(bot.median_ms), duration(bot.p90_ms), bot.count],
        [t("Agents"), duration(agent.median_ms), duration(agent.p90_ms), agent.count]],
    )]);
  }

  function handoffs(data) {
    const h = data.handoff_rate;
    const summary = h.conversations
      ? t("{handed} of {total} conversations handed off to a person ({rate}).", {
        handed: h.handed_off, total: h.conversations, rate: percent(h.rate),
      })
      : t("No conversations in the period.");
    const series = [{ name: t("Conversations"), kind: "one", values: [h.conversations, h.handed_off] }];
    const chart = barChart({
      categories: [t("All"), t("Handed off")], series, summary,
      xLabel: t("Conversations the customer wrote in"), yLabel: t("Conversations"),
    });
    show("handoffs", [chart], [table(
      t("Handoff rate"), [t("Conversations"), t("Handed off"), t("Rate")],
      [[h.conversations, h.handed_off, percent(h.rate)]],
    )]);
  }

  function states(data) {
    const s = data.conversations_by_state;
    const labels = [t("bot"), t("waiting"), t("agent"), t("closed")];
    const values = [s.bot, s.waiting, s.agent, s.closed];
    const summary = t("The period's conversations by their state now: {bot} with the bot, {waiting} waiting, {agent} with an agent, {closed} closed.", s);
    const series = [{ name: t("Conversations"), kind: "one", values }];
    const chart = barChart({
      categories: labels, series, summary, xLabel: t("State"), yLabel: t("Conversations"),
    });
    show("states", [chart], [table(
      t("Conversations by state"), [t("State"), t("Conversations")],
      labels.map((label, i) => [label, values[i]]),
    )]);
  }

  function campaigns(data) {
    const stages = ["total", "sent", "delivered", "read", "replied", "failed", "skipped"];
    const names = [t("Recipients"), t("Sent"), t("Delivered"), t("Read"), t("Replied"), t("Failed"), t("Skipped")];
    if (!data.campaigns.length) {
      show("campaigns", [el("p", "muted", t("No campaign ran in the period."))], [el("p", "muted", t("No campaign ran in the period."))]);
      return;
    }
    const figure = [];
    for (const c of data.campaigns) {
      const n = c.counts;
      const summary = t("Campaign {name}: {total} recipients, {sent} sent, {delivered} delivered, {read} read, {replied} replied, {failed} failed, {skipped} skipped.", Object.assign({ name: c.name }, n));
      const box = el("div", "campaign");
      box.setAttribute("data-testid", "campaign-funnel");
      box.dataset.campaignId = c.id;
      box.append(el("h3", "", c.name));
      box.append(barChart({
        categories: names, series: [{ name: t("Recipients"), kind: "one", values: stages.map((k) => n[k]) }],
        summary, xLabel: t("Stage"), yLabel: t("Recipients"),
      }));
      figure.push(box);
    }
    show("campaigns", figure, [table(
      t("Campaign funnels"), [t("Campaign"), ...names],
      data.campaigns.map((c) => [c.name, ...stages.map((k) => c.counts[k])]),
    )]);
  }

  async function load() {
    status.textContent = t("Loading...");
    const query = "?from=" + encodeURIComponent(from.value) + "&to=" + encodeURIComponent(to.value) +
      (number.value ? "&phone_number_id=" + encodeURIComponent(number.value) : "");
    let data;
    try {
      data = await api("GET", "/v1/analytics" + query);
    } catch (error) {
      const where = error.fields && error.fields.length
        ? " (" + error.fields.map((f) => f.path + ": " + f.message).join("; ") + ")" : "";
      status.textContent = t("Refused: {reason}", { reason: error.message + where });
      return;
    }
    for (const draw of [messages, responses, handoffs, states, campaigns]) draw(data);
    status.textContent = t("Showing {from} to {to}.", { from: data.period.from, to: data.period.to });
    document.body.dataset.loaded = query; // for tests: the figures of this query are drawn
  }

  // The last 14 days (UTC), today included.
  const today = new Date();
  to.value = today.toISOString().slice(0, 10);
  from.value = new Date(today.getTime() - 13 * 86400000).toISOString().slice(0, 10);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  number.addEventListener("change", () => load());
  api("GET", "/v1/numbers?limit=100").then((data) => {
    for (const n of data.data) {
      const label = n.display_phone_number ? n.display_phone_number + " · " + n.phone_number_id : n.phone_number_id;
      const option = el("option", "", label);
      option.value = n.phone_number_id;
      number.append(option);
    }
  }).catch(() => {});
  load();
})();
