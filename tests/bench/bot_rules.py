"""`python -m tests.bench.bot_rules`: the CPU time the bot language spends on one message
with a definition of 500 rules (docs/bot.md, "Cost").

The definition is made up, seeded: mostly `any` rules (words and two-word phrases), some
regexes, buttons and message kinds, a fallback. The messages mix the ones a real bot sees:
a keyword of some rule, a button, a regex hit, nothing that matches (the fallback), and
long texts. Each `respond` call is timed in CPU time (`time.thread_time_ns`), and the
median and p99 are printed. Two more runs make every rule a regex: the regexes are the only
part whose cost grows with the number of rules. A regex with a literal (`price of`) is
skipped when its text is not there; one with nothing literal (`[a-z]{4}\\d{2}`) always
runs, the worst case.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from typing import Any

from shared.bot import BotState, Contact, Turn, load, respond
from shared.bot.loader import Bot
from tests.bench.stats import percentile

NOW = 1_800_000_000.0


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9)))


def definition(
    rules: int, rng: random.Random, *, regex_share: float, literal: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """A definition and the vocabulary its `any` rules use."""
    vocabulary = sorted({_word(rng) for _ in range(rules * 6)})
    out: list[dict[str, Any]] = []
    regexes = int(rules * regex_share)
    for i in range(rules):
        rule: dict[str, Any] = {
            "id": f"r{i}",
            "reply": {"text": f"Answer {i} for {{{{contact.name}}}}."},
        }
        if i < regexes and literal:
            rule["match"] = {"regex": rf"\b{vocabulary[i]} (?P<n>[a-z]\d{{2,6}})\b"}
        elif i < regexes:  # nothing literal to look for first: the regex always runs
            rule["match"] = {
                "regex": rf"\b[a-z]{{{4 + i % 5}}}\d{{{2 + i % 7}}}[a-z]{{{1 + i % 3}}}\b"
            }
        elif i % 25 == 0:
            rule["match"] = {"button": f"b{i}", "any": [vocabulary[i]]}
        elif i % 50 == 1:
            rule["match"] = {"kind": "location"}
        else:
            phrases = [vocabulary[(i * 4 + k) % len(vocabulary)] for k in range(3)]
            phrases.append(
                f"{vocabulary[(i * 7) % len(vocabulary)]} {vocabulary[(i * 11) % len(vocabulary)]}"
            )
            rule["match"] = {"any": phrases}
        out.append(rule)
    rng.shuffle(out)  # regexes anywhere in the order, not all first
    data = {"version": 1, "language": "en", "rules": out, "fallback": {"text": "Sorry?"}}
    return data, vocabulary


def messages(count: int, vocabulary: list[str], rng: random.Random) -> list[Turn]:
    filler = [_word(rng) for _ in range(200)]
    out = []
    for i in range(count):
        chosen = i % 10
        words = [rng.choice(filler) for _ in range(rng.randint(3, 15))]
        if chosen < 4:  # a keyword somewhere in the sentence
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
            out.append(Turn(text=" ".join(words), timestamp=NOW))
        elif chosen < 7:  # nothing matches: the fallback
            out.append(Turn(text=" ".join(words).capitalize() + "?", timestamp=NOW))
        elif chosen == 7:  # long, with accents and punctuation
            long = " ".join(rng.choice(filler) for _ in range(60))
            out.append(Turn(text=f"Perché {long}, è così!", timestamp=NOW))
        elif chosen == 8:
            out.append(
                Turn(
                    text="Pick",
                    kind="button",
                    button_id=f"b{rng.randrange(20) * 25}",
                    timestamp=NOW,
                )
            )
        else:  # a regex hit
            out.append(Turn(text=f"about {rng.choice(vocabulary[:50])} x123 please", timestamp=NOW))
    return out


def measure(bot: Bot, turns: list[Turn]) -> list[float]:
    contact, state = Contact(name="Ann"), BotState()
    for turn in turns[:200]:  # warm up
        respond(bot, state, turn, contact, NOW)
    times = []
    for turn in turns:
        started = time.thread_time_ns()
        respond(bot, state, turn, contact, NOW)
        times.append((time.thread_time_ns() - started) / 1e3)
    return times


def run(
    rules: int, count: int, regex_share: float, seed: int, literal: bool = True
) -> dict[str, float]:
    rng = random.Random(seed)
    data, vocabulary = definition(rules, rng, regex_share=regex_share, literal=literal)
    started = time.process_time()
    bot = load(json.dumps(data))
    load_ms = (time.process_time() - started) * 1e3
    times = measure(bot, messages(count, vocabulary, rng))
    return {
        "rules": rules,
        "regexes": int(rules * regex_share),
        "messages": count,
        "load_ms": round(load_ms, 1),
        "median_us": round(percentile(times, 50), 1),
        "p99_us": round(percentile(times, 99), 1),
        "max_us": round(max(times), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"bot rules: CPU time per message (respond), Python {sys.version.split()[0]}")
    cases = (
        ("typical (8% regex)", 0.08, True),
        ("all regex", 1.0, True),
        ("all regex, no literal", 1.0, False),
    )
    for label, share, literal in cases:
        figures = run(args.rules, args.messages, share, args.seed, literal)
        print(
            f"  {label:<22} {figures['rules']} rules ({figures['regexes']} regexes), "
            f"{figures['messages']} messages: median {figures['median_us']} µs, "
            f"p99 {figures['p99_us']} µs, max {figures['max_us']} µs; load {figures['load_ms']} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
