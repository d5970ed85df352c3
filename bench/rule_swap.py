#!/usr/bin/env python3
"""Analysis for bench/rule_swap.sh.

  rule_swap.py run DIR         one run's directory -> JSON on stdout, one line on stderr
  rule_swap.py summary OUT MD [DEBOUNCE_MS]
                               every runN.json in OUT -> min / median / max in MD;
                               DEBOUNCE_MS: the rules.reload_debounce_ms the runs set
                               (none: the gateway's default)

A run directory holds: data/records.jsonl (the file sink: one record a line, the envelope
as `value`, version-2 records with the header rule_version = 2), hookline.log (text logs,
RFC 3339 UTC timestamps), swap_time (epoch seconds read right before the rename),
load.json (the load generator's results) and uptime.
"""

import base64
import json
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

SEQ = re.compile(rb'"seq":(\d+)')
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
LOAD_MS = re.compile(r"load_ms=([\d.]+)")


def log_epoch(line):
    """Epoch seconds of a text log line, or None."""
    m = LOG_TIME.match(line)
    if not m:
        return None
    stamp = m.group(1)[:26]  # microseconds at most, for fromisoformat
    return datetime.fromisoformat(stamp + "+00:00").timestamp()


def reload_times(log_path, swap):
    """(epoch of the version-2 "rule loaded" line, its load_ms, epoch of the next
    "rule set updated" line) after the swap."""
    loaded = load_ms = in_force = None
    for line in open(log_path, encoding="utf-8", errors="replace"):
        t = log_epoch(line)
        if t is None or t < swap - 0.001:
            continue
        if loaded is None and "rule loaded" in line and "replaced=true" in line:
            loaded = t
            m = LOAD_MS.search(line)
            load_ms = float(m.group(1)) if m else None
        elif loaded is not None and "rule set updated" in line:
            in_force = t
            break
    return loaded, load_ms, in_force


def analyse(run_dir):
    run_dir = Path(run_dir)
    swap = float((run_dir / "swap_time").read_text())
    load = json.loads((run_dir / "load.json").read_text())
    seen = {}          # (client id, seq) -> times routed
    versions = {}      # client id -> versions in file order, collapsed ("1", "12", ...)
    first_v2 = last_v1 = None
    counts = {"1": 0, "2": 0}
    for line in open(run_dir / "data" / "records.jsonl", "rb"):
        rec = json.loads(line)
        value = rec["value"]
        version = rec.get("headers", {}).get("rule_version", "1")
        counts[version] += 1
        client = value["client_id"]
        head = base64.b64decode(value["payload"][:344])  # the first 258 bytes hold seq
        seq = int(SEQ.search(head).group(1))
        seen[(client, seq)] = seen.get((client, seq), 0) + 1
        trail = versions.get(client, "")
        if not trail.endswith(version):
            versions[client] = trail + version
        ts = value["ts"]
        if version == "2":
            first_v2 = ts if first_v2 is None else min(first_v2, ts)
        else:
            last_v1 = ts if last_v1 is None else max(last_v1, ts)
    # Each lock publishes seq 0, 1, 2, ...: any seq below a lock's highest that never
    # became a record is lost.
    highest = {}
    for client, seq in seen:
        highest[client] = max(highest.get(client, -1), seq)
    expected_from_seqs = sum(h + 1 for h in highest.values())
    published = load["state"]["acked"]
    loaded, load_ms, in_force = reload_times(run_dir / "hookline.log", swap)
    ms = lambda t: None if t is None else round((t - swap) * 1000.0, 1)
    return {
        "swap_epoch": swap,
        "first_v2_ms": None if first_v2 is None else round(first_v2 - swap * 1000.0, 1),
        "last_v1_ms": None if last_v1 is None else round(last_v1 - swap * 1000.0, 1),
        "loaded_ms": ms(loaded),
        "in_force_ms": ms(in_force),
        "load_ms": load_ms,
        "published": published,
        "sent": load["state"]["sent"],
        "records_v1": counts["1"],
        "records_v2": counts["2"],
        "routed": len(seen),
        "missing": max(published, expected_from_seqs) - len(seen),
        "duplicates": sum(n - 1 for n in seen.values()),
        # A lock whose records go 1 -> 2 -> 1 was decided by the old version after the new.
        "order_violations": sum(1 for v in versions.values() if v not in ("1", "2", "12")),
        "locks_seen_v2": sum(1 for v in versions.values() if "2" in v),
        "throughput_msg_s": load["state"]["throughput_msg_s"],
        "devices": load["config"]["devices"],
        "uptime": (run_dir / "uptime").read_text().strip(),
    }


def summary(out_dir, report, debounce_ms):
    runs = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("run*.json"))]
    if not runs:
        sys.exit(f"no runN.json in {out_dir}: did bench/rule_swap.sh run?")

    def stats(key):
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            return "-"
        return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"

    for r in runs:
        r["wait_ms"] = None if None in (r["loaded_ms"], r["load_ms"]) else r["loaded_ms"] - r["load_ms"]
    command = f"DEBOUNCE_MS={debounce_ms} bash bench/rule_swap.sh" if debounce_ms else "bash bench/rule_swap.sh"
    debounce = f"{debounce_ms} ms" if debounce_ms else "the default, 100 ms"
    lines = [
        f"## Rule swap under load (`{command}`, sink: file)",
        "",
        f"{len(runs)} runs; each: {runs[0]['devices']} locks at {runs[0]['throughput_msg_s']:.0f} msg/s (QoS 1), the seed rule "
        f"replaced mid-run by a version adding a record header (temp file + rename); "
        f"`rules.reload_debounce_ms` {debounce}. "
        "Times from the rename, in ms, min / median / max:",
        "",
        "| step | ms |",
        "| --- | ---: |",
        f"| rescan starts (file notification + debounce; `rule loaded` - `load_ms`) | {stats('wait_ms')} |",
        f"| version 2 compiled and checked (`rule loaded`) | {stats('loaded_ms')} |",
        f"| of which compiling and checking (`load_ms`) | {stats('load_ms')} |",
        f"| new rule set in force (`rule set updated`) | {stats('in_force_ms')} |",
        f"| first record decided by version 2 (its event's `ts`) | {stats('first_v2_ms')} |",
        f"| last record decided by version 1 (its event's `ts`) | {stats('last_v1_ms')} |",
        "",
        "| run | published | routed by v1 / v2 | missing | duplicated | out of order | load average |",
        "| ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for i, r in enumerate(runs, 1):
        load_avg = r["uptime"].split("load average:")[-1].strip()
        lines.append(
            f"| {i} | {r['published']} | {r['records_v1']} / {r['records_v2']} | {r['missing']} | "
            f"{r['duplicates']} | {r['order_violations']} | {load_avg} |"
        )
    Path(report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        r = analyse(sys.argv[2])
        print(json.dumps(r, indent=2))
        print(
            f"first v2 record {r['first_v2_ms']} ms after the swap, in force {r['in_force_ms']} ms "
            f"(load {r['load_ms']} ms); {r['published']} published, {r['missing']} missing, "
            f"{r['duplicates']} duplicated, {r['order_violations']} out of order; {r['uptime']}",
            file=sys.stderr,
        )
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "summary":
        summary(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) == 5 else "")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
