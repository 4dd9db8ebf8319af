#!/usr/bin/env python3
"""Records cargo-mutants shard outcomes and merges them into one kill rate per crate (ci/mutants).

Usage:
    mutants-report.py keys LIST_JSON > KEYS_TSV
    mutants-report.py record SHARD_DIR > RECORD_TSV
    mutants-report.py report NAME LIST_JSON RECORD_DIR [RECORD_DIR ...]
    mutants-report.py pending LIST_JSON RECORD_DIR [RECORD_DIR ...]

`keys` reads `cargo mutants --list --json` and prints one line per mutant: its *key* (six
tab-separated fields: its file, its function, a hash of the function's source as it is now, its position
relative to the function's first line, its genre and its replacement), its position, its name. The key does not hold the
mutant's line number, so a change elsewhere in the file (a test added to its `mod tests`) leaves
it as it was, while any change to the function itself gives its mutants new keys: an outcome is
never carried over to code that was not tested.

`record` turns a shard's outcomes (`SHARD_DIR/mutants.out/outcomes.json`, the keys written
before the shard ran in `SHARD_DIR/keys.tsv`, and `SHARD_DIR/shard.txt`) into a record: the
shard's description as `#` lines, then `outcome<TAB>key<TAB>name` per mutant (cargo-mutants'
name for it, `file:line:column: what`, for readers). ci/mutants keeps
the records under docs/mutants/CRATE/, committed, so shards run in different sessions (on
different machines) add up to one run.

`pending` prints, one per line, the name and (after a tab) an anchored regex that matches it
(for `-F` of cargo-mutants, which matches names) of each mutant that `report` would call "not
run": what `ci/mutants rest` runs after the shard slices moved or a change to a function gave
its mutants new keys.

`report` merges the records of one crate against its current mutant list (LIST_JSON, as `keys`
reads it): a mutant's outcome is the one of the newest record that holds its key; mutants with no
record are "not run". It prints the records, caught / missed / unviable / timeout / not run per
file, and

    kill rate = caught / (caught + missed)

Unviable mutants (they do not build) are not in it. Timeouts are not in it either: a mutant whose
tests hung was stopped, which cargo-mutants does not count as caught, and a hang under load is not
proof that a test checks the behaviour. They are printed beside the rate, with the rate they would
give counted as caught. A record's outcome stands for the tests of its commit: a caught mutant
stays caught as tests are added (no test is ever weakened: the project's rule), and a missed one
counts as missed until a newer record (a shard or a `ci/mutants verify` run) says otherwise.
"""

import hashlib
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
NOT_RUN = "not run"
# A key's tab-separated fields: file, function, source hash, position, genre, replacement.
KEY_FIELDS = 6


def line_col(span, end="start"):
    point = (span or {}).get(end) or {}
    return int(point.get("line", 0)), int(point.get("column", 0))


def position(mutant):
    """Where a mutant sits: (file, line, column, genre, replacement), as both the list and the
    outcomes give it."""
    line, col = line_col(mutant.get("span"))
    return (mutant.get("file", "?"), line, col, mutant.get("genre", ""), mutant.get("replacement", ""))


class Sources:
    """The crate's source files as they are now, read once each."""

    def __init__(self, root):
        self.root = Path(root)
        self.files = {}

    def lines(self, file):
        if file not in self.files:
            path = self.root / file
            self.files[file] = path.read_text().splitlines() if path.is_file() else []
        return self.files[file]


def key_of(mutant, sources):
    """file, function, hash of the function's source, position in it, genre, replacement."""
    file = mutant.get("file", "?")
    line, col = line_col(mutant.get("span"))
    function = mutant.get("function") or {}
    if isinstance(function, dict) and function.get("span"):
        name = function.get("function_name", "?")
        first, _ = line_col(function["span"])
        last, _ = line_col(function["span"], "end")
    else:
        # A mutant outside any function (a constant's expression): its own lines stand in.
        name = "-"
        first, _ = line_col(mutant.get("span"))
        last, _ = line_col(mutant.get("span"), "end")
    text = "\n".join(sources.lines(file)[max(first - 1, 0) : last])
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    fields = (file, name, digest, f"{line - first}:{col}", mutant.get("genre", ""), mutant.get("replacement", ""))
    return "\t".join(f.replace("\t", " ").replace("\n", " ") for f in fields)


def name_of(mutant):
    return mutant.get("name") or "{}:{}:{}: {} {}".format(*position(mutant))


def keys(list_json, root="."):
    sources = Sources(root)
    for mutant in json.loads(Path(list_json).read_text()):
        print(f"{key_of(mutant, sources)}\t{json.dumps(position(mutant))}\t{name_of(mutant)}")
    return 0


def read_keys(path):
    """{position: (key, name)} from a keys file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split("\t")
        key, pos, name = "\t".join(parts[:KEY_FIELDS]), parts[KEY_FIELDS], "\t".join(parts[KEY_FIELDS + 1 :])
        out[tuple(json.loads(pos))] = (key, name)
    return out


def record(shard_dir):
    shard_dir = Path(shard_dir)
    by_position = read_keys(shard_dir / "keys.tsv")
    outcomes = json.loads((shard_dir / "mutants.out" / "outcomes.json").read_text())
    info = shard_dir / "shard.txt"
    for line in (info.read_text() if info.is_file() else "").splitlines():
        print(f"# {line}")
    unmatched = 0
    for outcome in outcomes.get("outcomes", []):
        scenario = outcome.get("scenario")
        if not (isinstance(scenario, dict) and "Mutant" in scenario):
            continue  # the baseline
        kind = SUMMARY_KIND.get(outcome.get("summary"))
        if kind is None:
            continue
        mutant = scenario["Mutant"]
        found = by_position.get(position(mutant))
        if found is None:
            unmatched += 1
            print(f"warning: no key for {name_of(mutant)}", file=sys.stderr)
            continue
        key, name = found
        print(f"{kind}\t{key}\t{name}")
    return 1 if unmatched else 0


class Record:
    def __init__(self, path):
        self.path = Path(path)
        self.header = []
        self.outcomes = {}
        for line in self.path.read_text().splitlines():
            if line.startswith("#"):
                self.header.append(line[1:].strip())
            elif line.strip():
                parts = line.split("\t")
                key, name = "\t".join(parts[1 : KEY_FIELDS + 1]), "\t".join(parts[KEY_FIELDS + 1 :])
                self.outcomes[key] = (parts[0], name)

    def field(self, pattern):
        for line in self.header:
            m = re.search(pattern, line)
            if m:
                return m
        return None


def current_mutants(list_json, root="."):
    """{key: (file, name)} of the mutants in LIST_JSON, keyed from the source as it is now."""
    sources = Sources(root)
    return {
        key_of(mutant, sources): (mutant.get("file", "?"), name_of(mutant))
        for mutant in json.loads(Path(list_json).read_text())
    }


def read_records(record_dirs):
    """Every record under RECORD_DIRS, oldest first (by name: the names start with a UTC stamp)."""
    paths = sorted((p for d in record_dirs for p in Path(d).glob("*.tsv")), key=lambda p: p.name)
    return [Record(p) for p in paths]


# The characters the Rust regex crate treats as meta (its `regex::escape` escapes these).
RUST_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def rust_regex_escape(text):
    return "".join("\\" + c if c in RUST_REGEX_META else c for c in text)


def pending(list_json, record_dirs, root="."):
    current = current_mutants(list_json, root)
    recorded = {key for rec in read_records(record_dirs) for key in rec.outcomes}
    for key, (_, mname) in sorted(current.items(), key=lambda item: item[1][1]):
        if key not in recorded:
            print(f"{mname}\t^{rust_regex_escape(mname)}$")
    return 0


def report(name, list_json, record_dirs, root="."):
    current = current_mutants(list_json, root)
    records = read_records(record_dirs)
    print(f"== {name}: {len(current)} mutants now, {len(records)} record(s)")
    total_time = 0
    latest = {}
    for rec in records:
        counts = dict.fromkeys(KINDS, 0)
        for key, (kind, _) in rec.outcomes.items():
            counts[kind] += 1
            latest[key] = kind  # records are read oldest first: the newest wins
        live = sum(1 for key in rec.outcomes if key in current)
        took = rec.field(r"took (\d+) s")
        if took:
            total_time += int(took.group(1))
        took_txt = f"{int(took.group(1)) // 60}m{int(took.group(1)) % 60:02d}s, " if took else ""
        print(
            f"  {rec.path.name}: {len(rec.outcomes)} mutants, {took_txt}"
            + ", ".join(f"{counts[k]} {k}" for k in KINDS)
            + ("" if live == len(rec.outcomes) else f" ({len(rec.outcomes) - live} no longer in the list)")
        )
    per_file = defaultdict(lambda: dict.fromkeys(KINDS + (NOT_RUN,), 0))
    listed = defaultdict(list)
    for key, (file, mname) in current.items():
        kind = latest.get(key, NOT_RUN)
        per_file[file][kind] += 1
        if kind in ("missed", "timeout", NOT_RUN):
            listed[kind].append(mname)
    print(f"{'file':44} {'caught':>7} {'missed':>7} {'unviable':>9} {'timeout':>8} {'not run':>8}")
    total = dict.fromkeys(KINDS + (NOT_RUN,), 0)
    for file in sorted(per_file):
        c = per_file[file]
        print(f"{file:44} " + " ".join(f"{c[k]:{w}}" for k, w in zip(KINDS + (NOT_RUN,), (7, 7, 9, 8, 8))))
        for k in total:
            total[k] += c[k]
    print(f"{'total':44} " + " ".join(f"{total[k]:{w}}" for k, w in zip(KINDS + (NOT_RUN,), (7, 7, 9, 8, 8))))
    run = len(current) - total[NOT_RUN]
    print(f"run: {run} of {len(current)} mutants ({100.0 * run / max(len(current), 1):.1f} %)")
    viable = total["caught"] + total["missed"]
    if viable:
        rate = 100.0 * total["caught"] / viable
        line = f"kill rate {name}: {total['caught']} / {viable} = {rate:.1f} % (caught / (caught + missed))"
        if total["timeout"]:
            with_t = 100.0 * (total["caught"] + total["timeout"]) / (viable + total["timeout"])
            line += f"; {total['timeout']} timeout(s) left out ({with_t:.1f} % if counted as caught)"
        print(line)
    if total_time:
        print(f"time in the records: {total_time // 3600} h {total_time % 3600 // 60:02d} min")
    for kind in ("missed", "timeout", NOT_RUN):
        if listed[kind]:
            print(f"-- {kind}:")
            for item in sorted(listed[kind]):
                print(f"   {item}")
    print()
    return 0


def main(args):
    if len(args) == 2 and args[0] == "keys":
        return keys(args[1])
    if len(args) == 2 and args[0] == "record":
        return record(args[1])
    if len(args) >= 4 and args[0] == "report":
        return report(args[1], args[2], args[3:])
    if len(args) >= 3 and args[0] == "pending":
        return pending(args[1], args[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
