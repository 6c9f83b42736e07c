"""`make profile`: where each service's CPU goes under steady end-to-end load.

Starts the bench's stack (out-of-process fakes, isolated vhost and database), drives customer
messages at a fixed open-loop rate, and samples every service with py-spy meanwhile. Prints,
per service, its CPU share by library (asyncpg, aiormq, aiohttp, opentelemetry, ...) and its
hottest functions by own time; writes the raw stacks (flamegraph input) to the output folder.

Usage: .venv/bin/python -m tests.bench.profile [--rate 80] [--seconds 20] [--llm 0]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shared.stack import ROOT
from tests.bench.run import Bench, Plan, log

_STDLIB = {"asyncio", "selectors", "threading", "contextlib", "runpy", "<frozen runpy>"}


def library_of(frame: str) -> str:
    """`function (path:line)` -> the library (or our package) the frame's file belongs to:
    py-spy names files relative to their sys.path entry, so the first part is the package."""
    match = re.search(r"\((.*?):\d+\)$", frame)
    if not match:
        return "other"
    parts = match.group(1).split("/")
    if parts[0] in ("services", "shared", "tests") and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py")


def summarise(raw: Path, top: int = 15) -> str:
    """py-spy's collapsed stacks -> CPU by library (deepest non-stdlib frame) and by function."""
    by_library: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        by_function[frames[-1]] += n
        for name in {f"{f.split(' (')[0]} ({library_of(f)})" for f in frames}:
            inclusive[name] += n
        # The event loop's own time (uvloop's C code shows as the frame that entered it)
        # counts as "event loop"; otherwise the deepest frame outside the standard library.
        owner = "event loop" if len(frames) <= 8 else "stdlib"
        for frame in reversed(frames):
            lib = library_of(frame)
            if lib not in _STDLIB and lib != "other":
                owner = lib
                break
        by_library[owner] += n
    if not total:
        return "  (no samples)"
    lines = ["  by library (deepest frame outside the standard library):"]
    lines += [f"    {n / total:6.1%}  {lib}" for lib, n in by_library.most_common(12)]
    lines.append("  hottest functions (own time):")
    lines += [f"    {n / total:6.1%}  {fn[:110]}" for fn, n in by_function.most_common(top)]
    lines.append("  our functions, inclusive (share of samples with the function on the stack):")
    ours = [(k, n) for k, n in inclusive.most_common() if "(services/" in k or "(shared/" in k]
    lines += [f"    {n / total:6.1%}  {fn[:110]}" for fn, n in ours[:top]]
    return "\n".join(lines)


def py_spy() -> str | None:
    """py-spy on PATH or beside this interpreter (make install puts it in the venv)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def record(spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` for `seconds` into `out` (raw collapsed stacks)."""
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking",
         "--duration", str(int(seconds)), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make profile", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=80, help="customer messages per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--llm", type=float, default=0.0, help="fake LLM latency, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "profile")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra stack setting"
    )
    args = parser.parse_args(argv)
    spy = py_spy()
    if spy is None:
        parser.error("py-spy is not installed (make install)")
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(Plan.make(quick=True), dict(kv.split("=", 1) for kv in args.env))
    try:
        bench.setup()
        bench.start()
        assert bench.openai is not None
        bench.openai.set_latency(args.llm)
        pids = bench.service_pids()
        spies = {
            name: record(spy, pid, args.seconds, args.out / f"{name}.txt")
            for name, pid in pids.items()
        }
        time.sleep(0.5)  # py-spy attaches before the load starts
        step = bench.e2e_step(args.rate, args.seconds, args.llm)
        for proc in spies.values():
            proc.wait(timeout=60)
        acc = step["accounting"]
        log(
            f"{args.rate:.0f}/s for {args.seconds:.0f} s: p50 {step['p50_ms']:.0f} ms,"
            f" p99 {step['p99_ms']:.0f} ms, sustained {step['sustained']};"
            f" lost {acc['lost']} dup {acc['duplicates']} ooo {acc['out_of_order']}"
        )
        for name, cost in step.get("cost", {}).items():
            log(f"cost {name}: {cost}")
        for name in spies:
            raw = args.out / f"{name}.txt"
            if raw.exists():
                print(f"\n{name}\n{summarise(raw)}")
    finally:
        bench.teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
