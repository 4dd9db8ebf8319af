#!/usr/bin/env python3
"""Merges cargo-mutants shard reports into one table per crate (ci/mutants report).

Usage: mutants-report.py NAME=DIR [NAME=DIR ...]

DIR holds the shard directories of one crate (`shard-K/mutants.out/outcomes.json` and
`shard-K/shard.txt`, as ci/mutants writes them); a DIR that itself holds `mutants.out/` (a one-off
run with `--file`) is read as a single report. Prints caught / missed / unviable / timeout per
file, then per crate:

    kill rate = caught / (caught + missed)

Unviable mutants (they do not build) are not in it. Timeouts are not in it either: a mutant whose
tests hung was stopped, which cargo-mutants does not count as caught, and a hang under load is not
proof that a test checks the behaviour. They are printed beside the rate, with the rate they would
give counted as caught, so a reader sees both. The merge warns when shards of different shard
counts or of different tested trees are mixed (the crate and what its tests build on, as
`ci/mutants` hashes them; the commit for shards that predate that line), or some are missing.
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

KINDS = ("caught", "missed", "unviable", "timeout")
SUMMARY_KIND = {
    "CaughtMutant": "caught",
    "MissedMutant": "missed",
    "Unviable": "unviable",
    "Timeout": "timeout",
}


def mutant_of(outcome):
    scenario = outcome.get("scenario")
    if isinstance(scenario, dict) and "Mutant" in scenario:
        return scenario["Mutant"]
    return None


def describe(m):
    fn = m.get("function") or {}
    name = fn.get("function_name", "?") if isinstance(fn, dict) else str(fn)
    span = m.get("span") or {}
    line = (span.get("start") or {}).get("line", "?")
    return f"{m.get('file', '?')}:{line}: {m.get('genre', '')} in {name}: {m.get('replacement', '')}"


def reports_of(directory):
    """(label, outcomes.json path, shard.txt text) for each report under `directory`."""
    directory = Path(directory)
    found = []
    single = directory / "mutants.out" / "outcomes.json"
    if single.is_file():
        found.append((directory.name, single, ""))
    shard_dirs = [d for d in directory.glob("shard-*") if d.is_dir()]
    for shard in sorted(shard_dirs, key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        outcomes = shard / "mutants.out" / "outcomes.json"
        info = shard / "shard.txt"
        text = info.read_text() if info.is_file() else ""
        if outcomes.is_file():
            found.append((shard.name, outcomes, text))
        else:
            print(f"warning: {shard} has no mutants.out/outcomes.json (not run, or interrupted)")
    return found


def report(name, directory):
    reports = reports_of(directory)
    if not reports:
        print(f"== {name}: no reports under {directory}\n")
        return None
    per_file = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    missed, timeouts = [], []
    specs, commits, times = set(), set(), []
    for label, path, text in reports:
        data = json.loads(path.read_text())
        m = re.search(r"shard (\d+)/(\d+) of \S+ at (\S+)", text)
        tree = re.search(r"^tested tree (\S+)(.*)$", text, re.M)
        if m:
            specs.add(int(m.group(2)))
        if tree:
            # The crate's inputs (ci/mutants' tested_tree): commits that changed only other
            # crates or docs test the same code.
            commits.add("tree " + tree.group(1) + (" (dirty)" if "uncommitted" in tree.group(2) else ""))
        elif m:
            commits.add(m.group(3) + (" (dirty)" if "uncommitted" in text else ""))
        t = re.search(r"took (\d+) s", text)
        counts = dict.fromkeys(KINDS, 0)
        for outcome in data.get("outcomes", []):
            mutant = mutant_of(outcome)
            if mutant is None:
                continue
            kind = SUMMARY_KIND.get(outcome.get("summary"))
            if kind is None:
                continue
            per_file[mutant.get("file", "?")][kind] += 1
            counts[kind] += 1
            if kind == "missed":
                missed.append(describe(mutant))
            elif kind == "timeout":
                timeouts.append(describe(mutant))
        took = f"{int(t.group(1)) // 60}m{int(t.group(1)) % 60:02d}s" if t else "?"
        if t:
            times.append(int(t.group(1)))
        n = sum(counts.values())
        times_txt = f", {took}" if t else ""
        print(f"{name} {label}: {n} mutants{times_txt}: " + ", ".join(f"{counts[k]} {k}" for k in KINDS))
    print()
    print(f"== {name} ({len(reports)} report(s))")
    print(f"{'file':44} {'caught':>7} {'missed':>7} {'unviable':>9} {'timeout':>8}")
    total = dict.fromkeys(KINDS, 0)
    for file in sorted(per_file):
        c = per_file[file]
        print(f"{file:44} {c['caught']:7} {c['missed']:7} {c['unviable']:9} {c['timeout']:8}")
        for k in KINDS:
            total[k] += c[k]
    print(f"{'total':44} {total['caught']:7} {total['missed']:7} {total['unviable']:9} {total['timeout']:8}")
    viable = total["caught"] + total["missed"]
    if viable:
        rate = 100.0 * total["caught"] / viable
        line = f"kill rate {name}: {total['caught']} / {viable} = {rate:.1f} % (caught / (caught + missed))"
        if total["timeout"]:
            with_t = 100.0 * (total["caught"] + total["timeout"]) / (viable + total["timeout"])
            line += f"; {total['timeout']} timeout(s) left out ({with_t:.1f} % if counted as caught)"
        print(line)
    if times:
        print(f"shard time: {sum(times) // 60} min in total, longest {max(times) // 60}m{max(times) % 60:02d}s")
    if len(specs) > 1:
        print(f"warning: shards of different shard counts merged: {sorted(specs)}")
    elif specs:
        (n,) = specs
        have = {int(re.sub(r"\D", "", label)) for label, _, _ in reports if label.startswith("shard-")}
        absent = sorted(set(range(n)) - have)
        if absent:
            print(f"note: {len(absent)} of {n} shards not run: {compact(absent)}")
    if len(commits) > 1:
        print(f"warning: shards of different trees merged: {', '.join(sorted(commits))}")
    for title, items in (("missed", missed), ("timeout", timeouts)):
        if items:
            print(f"-- {title}:")
            for item in sorted(items):
                print(f"   {item}")
    print()
    return total


def compact(numbers):
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start, prev = [], None, None
    for n in numbers + [None]:
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    return ", ".join(out)


def main(args):
    if not args:
        print(__doc__)
        return 2
    for arg in args:
        name, _, directory = arg.partition("=")
        if not directory:
            name, directory = Path(arg).name, arg
        report(name, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
