"""results.json -> results.md (the tables the README shows) and latency.png (the plot)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:,.{digits}f}"


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _x(a: Any, b: Any) -> str:
    """a as a multiple of b ("0.42x")."""
    try:
        if not b or math.isnan(a) or math.isnan(b):
            return "-"
    except TypeError:
        return "-"
    ratio = a / b
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def _pct(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "-"


def serial_floor_ms(results: dict[str, Any], step: dict[str, Any]) -> float:
    """The sum of the unloaded round trips one message makes, one after another: the webhook
    POST, each broker hop (a confirmed publish), each append, each call to the fakes, and the
    LLM's own latency. The end-to-end p50 over this says how much is queueing and overhead."""
    b = results["baselines"]
    per = step.get("per_message", {})
    http = b["http"]["unloaded"]["p50_ms"]
    return (
        http
        + per.get("consumed", 0) * b["broker"]["unloaded"]["p50_ms"]
        + per.get("appends", 0) * b["database"]["unloaded"]["p50_ms"]
        + per.get("upstream_calls", 0) * http
        + step["llm_s"] * 1e3
    )


def _best_step(e2e: dict[str, Any]) -> dict[str, Any] | None:
    rate = e2e.get("max_sustained_per_s")
    for step in e2e.get("steps", []):
        if step["offered_per_s"] == rate:
            return step
    return None


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    b = r["baselines"]
    plan = r["plan"]
    out: list[str] = []
    add = out.append
    add(f"Run of {m['date']} ({'quick' if plan['quick'] else 'full'}, {r['duration_s']:.0f} s).")
    add(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']},"
        f" Python {m['python']}, RabbitMQ {m['rabbitmq']}, PostgreSQL {m['postgresql']}."
        f" Everything on the same cores: the services, RabbitMQ, PostgreSQL, the fakes and the"
        f" load generator ({plan['processes']} processes x {plan['connections']} connections)."
        f" Load average before {m['loadavg_before'][0]:.2f}, after"
        f" {m.get('loadavg_after', [math.nan])[0]:.2f}; over the run the machine's CPUs were"
        f" {m.get('machine_cpu_busy', math.nan):.0%} busy (everything, ours included) and some"
        f" task waited for a CPU {m.get('cpu_pressure', math.nan):.0%} of the time;"
        f" PostgreSQL connections in use at the start: {m.get('postgres_connections_before')}."
    )
    if r.get("stack"):
        s = r["stack"]
        add(
            f"Stack settings: prefetch {s['prefetch']}"
            + (
                f" (conversation {s['conversation_prefetch']})"
                if s.get("conversation_prefetch")
                else ""
            )
            + f", {s['queues_per_stage']} queues per stage,"
            f" send rate {s['whatsapp_rate_per_second']:.0f}/s per number; overrides"
            f" {', '.join(f'{k}={v}' for k, v in s['env_overrides'].items())}."
        )
    add("")

    add("**Baselines** (the machine's ceilings in this run)")
    add("")
    add("| ceiling | throughput | latency p50 unloaded | p99 under load |")
    add("|---|---|---|---|")
    lg = b["loadgen"]
    ol = lg.get("open_loop", {})
    add(
        f"| load generator → trivial endpoint | {_n(lg['max_per_s'])} req/s"
        f" | - | open loop at {_n(ol.get('offered_per_s'))}/s: p99 {_ms(ol.get('p99_ms'))} ms,"
        f" send lag p99 {_ms(ol.get('send_lag_p99_ms'))} ms |"
    )
    h = b["http"]
    add(
        f"| HTTP: aiohttp, signature check only | {_n(h['max_per_s'])} req/s"
        f" | {_ms(h['unloaded']['p50_ms'])} ms | - |"
    )
    br = b["broker"]
    add(
        f"| broker: persistent publish + confirm, {br['in_flight']} in flight, 4 quorum queues"
        f" | {_n(br['per_s'])} msg/s | {_ms(br['unloaded']['p50_ms'])} ms"
        f" | {_ms(br['loaded']['p99_ms'])} ms |"
    )
    hop = b.get("broker_hop") or {}
    if hop.get("broker_cpu_ms_per_hop") is not None:
        add(
            f"| broker hop: confirmed publish, delivered and acked, at {_n(hop['rate_per_s'])}/s"
            f" | broker CPU {hop['broker_cpu_ms_per_hop']:.2f} ms per hop | - | - |"
        )
    db = b["database"]
    add(
        f"| database: `append_to_stream`, 1 event per call, pool {db['pool']}"
        f" | {_n(db['appends_per_s'])} appends/s (50 per call: {_n(db['batched_events_per_s'])}"
        f" events/s) | {_ms(db['unloaded']['p50_ms'])} ms | {_ms(db['loaded']['p99_ms'])} ms |"
    )
    add("")

    ing = r.get("ingress")
    if ing:
        d = ing["durable"]
        add(
            f"**Ingress** (signed webhooks; dedup stopped, so ingress is alone and every"
            f" acknowledged delivery is counted in the queue: {_n(d['accepted'])} acknowledged,"
            f" {_n(d['queued'])} queued). Most accepted: **{_n(ing['max_per_s'])}/s**"
            f" = {_x(ing['max_per_s'], h['max_per_s'])} the HTTP ceiling,"
            f" {_x(ing['max_per_s'], br['per_s'])} the broker ceiling."
        )
        add("")
        add(
            "| offered/s | accepted/s | errors | ack p50 | p99 | p99.9 (ms)"
            " | HTTP ceiling p50 / p99 / p99.9 | ratio p50 / p99 / p99.9 | generator lag p99 |"
        )
        add("|---|---|---|---|---|---|---|---|---|")
        for rate, f in ing["at_rate"].items():
            hb = h["at_rate"].get(rate, {})
            add(
                f"| {_n(float(rate))} | {_n(f['accepted_per_s'])} | {f['errors']}"
                f" | {_ms(f['p50_ms'])} | {_ms(f['p99_ms'])} | {_ms(f['p99_9_ms'])}"
                f" | {_ms(hb.get('p50_ms'))} / {_ms(hb.get('p99_ms'))} / {_ms(hb.get('p99_9_ms'))}"
                f" | {_x(f['p50_ms'], hb.get('p50_ms'))} / {_x(f['p99_ms'], hb.get('p99_ms'))}"
                f" / {_x(f['p99_9_ms'], hb.get('p99_9_ms'))} | {_ms(f['send_lag_p99_ms'])} ms |"
            )
        add("")
        long = ing.get("long")
        if long:
            add(
                f"Stalls: {_n(long['offered_per_s'])}/s for {long['duration_s']:.0f} s"
                f" ({_n(long['accepted'])} acknowledged, {long['errors']} errors): ack p50 /"
                f" p99 / p99.9 / max {_ms(long['p50_ms'])} / {_ms(long['p99_ms'])} /"
                f" {_ms(long['p99_9_ms'])} / **{_ms(long['max_ms'])} ms**;"
                f" **{_n(long['over_100ms'])}** acks over 100 ms; the longest time no answer"
                f" came while one was owed: {_ms(long['longest_silence_ms'])} ms (target: no"
                " stall over 100 ms)."
            )
            add("")

    e2e = r.get("e2e", {})
    if e2e:
        add(
            "**End to end** (customer messages over many customers, each writing every ~4 s:"
            " webhook posted → reply accepted by the fake Graph API; latency from the scheduled"
            " send time). *Sustained* = every webhook acknowledged, ≥ 98% answered within"
            " 2 s + LLM time of the last send, and p99 of the last third ≤ 2 x first third's"
            " + 50 ms."
        )
        add("")
        add(
            "| LLM | offered/s | replies/s | completion | p50 | p99 | p99.9 (ms)"
            " | p99 first → last third | sustained | lost / dup / out of order"
            " | p50 / p99 ÷ serial floor |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, label in (("llm_0ms", "0 ms"), ("llm_1s", "1 s")):
            for step in e2e.get(name, {}).get("steps", []):
                a = step["accounting"]
                floor = serial_floor_ms(r, step)
                add(
                    f"| {label} | {_n(step['offered_per_s'])}"
                    f" | {_n(step['replies_per_s'])}"
                    f" | {step['completion']:.1%} | {_ms(step['p50_ms'])} | {_ms(step['p99_ms'])}"
                    f" | {_ms(step['p99_9_ms'])} | {_ms(step['p99_first_third_ms'])} →"
                    f" {_ms(step['p99_last_third_ms'])} | {'yes' if step['sustained'] else 'no'}"
                    f" | {a['lost']} / {a['duplicates']} / {a['out_of_order']}"
                    f" | {_x(step['p50_ms'], floor)} / {_x(step['p99_ms'], floor)} of"
                    f" {_ms(floor)} ms |"
                )
        add("")
        refusals = [
            f"{_n(step['offered_per_s'])}/s (LLM {label}): {_n(step['ack']['refused_503'])},"
            f" answered p99 {_ms(step['ack']['refused_p99_ms'])} ms after their send time"
            for name, label in (("llm_0ms", "0 ms"), ("llm_1s", "1 s"))
            for step in e2e.get(name, {}).get("steps", [])
            if step.get("ack", {}).get("refused_503")
        ]
        if refusals:
            add(
                "Webhooks ingress turned away with 503 (Meta retries them): "
                + "; ".join(refusals)
                + "."
            )
            add("")
        for name, label in (("llm_0ms", "0 ms"), ("llm_1s", "1 s")):
            e = e2e.get(name)
            if not e:
                continue
            best = _best_step(e)
            failed = e.get("first_piled_up_per_s")
            text = f"Highest sustained rate, LLM {label}: **{_n(e['max_sustained_per_s'])}/s**" + (
                f" (first rate that piled up: {_n(failed)}/s)."
                if failed
                else " (no rate tried piled up)."
            )
            if best:
                per = best["per_message"]
                rate = best["offered_per_s"]
                text += (
                    f" Per message the pipeline made {per.get('consumed', 0):.1f} broker hops,"
                    f" {per.get('appends', 0):.1f} appends and {per.get('upstream_calls', 0):.1f}"
                    f" calls out; at {_n(rate)}/s that is"
                    f" {_pct(rate * per.get('consumed', 0), br['per_s'])} of the broker ceiling,"
                    f" {_pct(rate * per.get('appends', 0), db['appends_per_s'])} of the database"
                    f" ceiling and"
                    f" {_pct(rate * (1 + per.get('upstream_calls', 0)), h['max_per_s'])}"
                    f" of the HTTP ceiling."
                )
            add(text)
            add("")
        conv = e2e.get("llm_1s", {}).get("conversations")
        if conv:
            pr = conv["probe"]
            # The HTTP ceiling at the probe's rate, or at the nearest rate above it.
            rates = sorted(float(k) for k in h["at_rate"] if float(k) >= pr["offered_per_s"])
            hb_rate = rates[0] if rates else None
            hb = h["at_rate"].get(str(int(hb_rate)), {}) if hb_rate else {}
            a = conv["accounting"]
            pend = conv["pending"]
            add(
                f"**{_n(conv['messages'])} conversations on a 1 s LLM** (one message each from"
                f" {_n(conv['customers'])} customers, posted at {_n(conv['offered_per_s'])}/s;"
                f" the burst's own ack p50 / p99 {_ms(conv['ack']['p50_ms'])} /"
                f" {_ms(conv['ack']['p99_ms'])} ms). At most **{pend['peak_waiting']}**"
                f" conversations waited for their reply at once, at most"
                f" **{conv['llm_peak_in_flight']}** LLM calls were in flight. From"
                f" {r.get('probe_delay_s', 2.0):.0f} s after the burst began, ingress was probed"
                f" with status webhooks at {_n(pr['offered_per_s'])}/s for"
                f" {_n(pr['duration_s'])} s while {pend['waiting_during_probe_min']} to"
                f" {pend['peak_waiting']} conversations (median"
                f" {pend['waiting_during_probe_median']}) were waiting: probe ack p50 / p99 /"
                f" p99.9 **{_ms(pr['p50_ms'])} / {_ms(pr['p99_ms'])} / {_ms(pr['p99_9_ms'])}"
                f" ms** ({pr['errors']} errors; {_x(pr['p99_ms'], hb.get('p99_ms'))} the HTTP"
                f" ceiling's p99 at {_n(hb_rate)}/s). Replies: p50"
                f" {_ms(conv['p50_ms'])} ms, p99 {_ms(conv['p99_ms'])} ms, the last after"
                f" {_ms(conv['max_ms'])} ms ({_x(conv['max_ms'], 1000.0)} the LLM's 1 s);"
                f" lost / dup / out of order {a['lost']} / {a['duplicates']} / {a['out_of_order']}."
            )
            add("")

    table = peer_table(r)
    if table:
        add(table)
    add(cost_table(r))
    failures = r.get("failures") or []
    add(
        "**Correctness:** "
        + ("; ".join(failures) if failures else "no reply lost, duplicated or out of order.")
    )
    return "\n".join(out) + "\n"


# Not the product's cost: what the bench itself runs beside it.
_HARNESS = ("fake graph", "fake openai", "load generator")


def cpu_ms_per_message(step: dict[str, Any]) -> float:
    """CPU milliseconds per accepted message over every process but the harness's."""
    cpu = sum(v["cpu_s"] for k, v in step.get("cost", {}).items() if k not in _HARNESS)
    return cpu / step["accepted"] * 1e3 if step.get("accepted") else math.nan


def peer_table(r: dict[str, Any]) -> str:
    """Ours and the peer's end to end (LLM 0 ms) side by side, rate by rate, and the ratios."""
    p = r.get("peer") or {}
    if p.get("skipped"):
        return f"**Against the peer**: skipped ({p['skipped']}).\n"
    theirs = p.get("llm_0ms")
    ours = r.get("e2e", {}).get("llm_0ms")
    if not theirs or not ours:
        return ""
    by_rate = {s["offered_per_s"]: s for s in ours["steps"]}
    peer_by_rate = {s["offered_per_s"]: s for s in theirs["steps"]}

    def cells(step: dict[str, Any] | None) -> str:
        if step is None:
            return "- | - | - | - | -"
        a = step["accounting"]
        return (
            f"{step['completion']:.1%} | {_ms(step['p50_ms'])} | {_ms(step['p99_ms'])}"
            f" | {'yes' if step['sustained'] else 'no'}"
            f" | {a['lost']} / {a['duplicates']} / {a['out_of_order']}"
        )

    out = [
        f"**Against the peer**: {p['name']}, the bot a Python developer would write"
        " (`tests/bench/peer/bot.py`, documented defaults), through the same fakes and loader"
        " at the same rates, LLM 0 ms, while our stack was not running. It keeps nothing"
        " durable: what it acknowledged and had not answered is lost in a crash.",
        "",
        "| offered/s | ours: completion | p50 | p99 (ms) | sustained | lost / dup / ooo"
        " | peer: completion | p50 | p99 (ms) | sustained | lost / dup / ooo | p99 ours ÷ peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in sorted({*by_rate, *peer_by_rate}):
        a, b = by_rate.get(rate), peer_by_rate.get(rate)
        ratio = _x(a["p99_ms"], b["p99_ms"]) if a and b else "-"
        out.append(f"| {_n(rate)} | {cells(a)} | {cells(b)} | {ratio} |")
    mine, its = ours.get("max_sustained_per_s"), theirs.get("max_sustained_per_s")
    best, peer_best = _best_step(ours), _best_step(theirs)
    out += [
        "",
        f"Highest sustained rate: ours **{_n(mine)}/s**, the peer's **{_n(its)}/s**:"
        f" **{_x(mine or math.nan, its or math.nan)}** (target: at least 2x)."
        + (
            f" CPU per message at those rates: ours {_ms(cpu_ms_per_message(best))} ms over"
            f" every process of the stack (RabbitMQ and PostgreSQL included), the peer's"
            f" {_ms(cpu_ms_per_message(peer_best))} ms."
            if best and peer_best
            else ""
        ),
        "",
    ]
    return "\n".join(out)


def cost_table(r: dict[str, Any]) -> str:
    """CPU seconds per 1,000 messages and peak RSS per process, in the phases that count."""
    columns: list[tuple[str, dict[str, Any], int]] = []
    ing = r.get("ingress")
    if ing:
        columns.append(("ingress alone, saturated", ing["cost"], ing["cost_messages"]))
    e2e = r.get("e2e", {})
    best = _best_step(e2e.get("llm_0ms", {})) if e2e.get("llm_0ms") else None
    if best:
        columns.append(
            (f"e2e LLM 0 ms at {_n(best['offered_per_s'])}/s", best["cost"], best["accepted"])
        )
    conv = e2e.get("llm_1s", {}).get("conversations")
    if conv:
        columns.append(
            (f"{_n(conv['messages'])} conversations, LLM 1 s", conv["cost"], conv["accepted"])
        )
    if not columns:
        return ""
    names: list[str] = []
    # The end-to-end phases list every process (ingress alone runs without dedup).
    for _, cost, _ in reversed(columns):
        names += [n for n in cost if n not in names]
    lines = [
        "**Cost**: CPU seconds per 1,000 messages (peak RSS in MiB during the phase).",
        "",
        "| process | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in names:
        cells = []
        for _, cost, messages in columns:
            c = cost.get(name)
            if not c or not messages:
                cells.append("-")
                continue
            cells.append(f"{c['cpu_s'] / messages * 1000:.2f} s ({c['peak_rss_mib']:.0f} MiB)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    b = r["baselines"]
    floor_ingress = b["http"]["cpu_s_per_1000"] + b["broker"]["client_cpu_s_per_1000"]
    if ing:
        per = ing["cost"]["ingress"]["cpu_s"] / max(1, ing["cost_messages"]) * 1000
        lines += [
            "",
            f"Ingress spends {per:.2f} CPU s per 1,000 webhooks = {_x(per, floor_ingress)} the"
            f" baselines' {floor_ingress:.2f} s (signature-only server"
            f" {b['http']['cpu_s_per_1000']:.2f} s + confirmed-publish client"
            f" {b['broker']['client_cpu_s_per_1000']:.2f} s per 1,000).",
        ]
    floor_consumer = b["broker"]["client_cpu_s_per_1000"] + b["database"]["client_cpu_s_per_1000"]
    if best:
        rows = []
        for name in ("dedup", "conversation", "outbound"):
            c = best["cost"].get(name)
            if c and best["accepted"]:
                per = c["cpu_s"] / best["accepted"] * 1000
                rows.append(f"{name} {per:.2f} s = {_x(per, floor_consumer)}")
        lines += [
            "",
            f"At {_n(best['offered_per_s'])}/s end to end, per 1,000 messages: "
            + ", ".join(rows)
            + f" the {floor_consumer:.2f} s a bare client spends on one append and one"
            f" confirmed publish per message (the least a consumer that records and forwards"
            f" can do).",
        ]
        hop_ms = (b.get("broker_hop") or {}).get("broker_cpu_ms_per_hop")
        hops = best["per_message"].get("consumed", 0)
        if hop_ms is not None and hops:
            cores = r.get("machine", {}).get("cores") or "?"
            lines += [
                "",
                f"The floor of the machine: each broker hop costs RabbitMQ {hop_ms:.2f} CPU ms"
                f" (baseline above), and a customer message makes {hops:.1f} hops, so RabbitMQ"
                f" alone needs {hop_ms * hops:.1f} CPU ms per message: {hop_ms * hops:.1f}"
                f" cores at 1,000 messages/s, on a machine of {cores} cores that also runs"
                f" PostgreSQL, the services, the fakes and the load generator.",
            ]
    return "\n".join(lines) + "\n"


# Issue 6's targets, drawn on the plot: ingress p99 under 25 ms at 1,000/s, end-to-end p99
# under 250 ms at 500/s (LLM 0 ms).
TARGETS = {"ingress_p99_ms": (1000, 25), "e2e_p99_ms": (500, 250)}
COLOURS = {"p50_ms": "tab:blue", "p99_ms": "tab:orange", "p99_9_ms": "tab:green"}


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    pcts = (("p50_ms", "p50", "o"), ("p99_ms", "p99", "s"), ("p99_9_ms", "p99.9", "^"))
    ing = r.get("ingress", {}).get("at_rate", {})
    http = r["baselines"]["http"]["at_rate"]
    for key, label, marker in pcts:
        left.plot(
            [float(k) for k in ing],
            [ing[k][key] for k in ing],
            marker=marker,
            color=COLOURS[key],
            label=f"ingress {label}",
        )
    left.plot(
        [float(k) for k in http],
        [http[k]["p99_ms"] for k in http],
        ":",
        color="grey",
        marker="s",
        label="signature-only endpoint p99 (HTTP ceiling)",
    )
    x, y = TARGETS["ingress_p99_ms"]
    left.scatter([x], [y], marker="*", s=160, color="red", zorder=5, label="target p99")
    left.set_title("Ingress alone: webhook ack latency (open loop)")
    left.set_xlabel("offered webhooks / s")

    e2e = r.get("e2e", {})
    for name, style, llm in (("llm_0ms", "-", "LLM 0 ms"), ("llm_1s", "--", "LLM 1 s")):
        steps = e2e.get(name, {}).get("steps", [])
        for key, label, marker in pcts:
            xs = [s["offered_per_s"] for s in steps]
            ys = [s[key] for s in steps]
            right.plot(xs, ys, style, marker=marker, color=COLOURS[key], label=f"{llm} {label}")
            bad = [(x, y) for x, y, s in zip(xs, ys, steps, strict=True) if not s["sustained"]]
            if bad:
                right.scatter(
                    [x for x, _ in bad],
                    [y for _, y in bad],
                    s=140,
                    facecolors="none",
                    edgecolors="red",
                    zorder=5,
                )
    x, y = TARGETS["e2e_p99_ms"]
    right.scatter([x], [y], marker="*", s=160, color="red", zorder=5, label="target p99 (0 ms)")
    right.set_title("End to end: webhook → reply (red ring: piles up)")
    right.set_xlabel("offered customer messages / s")
    for ax in (left, right):
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    m = r["machine"]
    fig.suptitle(
        f"make bench, {m['date'][:16]} · {m['cpu']}, {m['cores']} cores"
        f" · machine CPU busy {m.get('machine_cpu_busy', math.nan):.0%} over the run",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> None:
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "latency.png")


if __name__ == "__main__":
    # Re-render a run: python -m tests.bench.report bench-results/<ts>
    folder = Path(sys.argv[1])
    write(json.loads((folder / "results.json").read_text()), folder)
