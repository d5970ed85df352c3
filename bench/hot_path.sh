#!/usr/bin/env bash
# Runs the criterion micro-benchmarks (benches/hot_path.rs, about 2 minutes) and writes
# their table to bench/results/criterion.md (bench/compare.sh's summary includes it).
#
#   bash bench/hot_path.sh              # all of them
#   bash bench/hot_path.sh rules/       # a filter, as for `cargo bench -- FILTER`
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
cargo bench --bench hot_path --no-run
# Other builds or tests on the machine would be measured too: wait (up to 60 s) until
# it is idle, and say how busy it was.
busy() {
    local a b
    read -r -a a < <(head -1 /proc/stat); sleep 1; read -r -a b < <(head -1 /proc/stat)
    local idle=$(( b[4] + b[5] - a[4] - a[5] )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( 100 * (total - idle) / total ))
}
for _ in $(seq 60); do (( $(busy) <= 15 )) && break; done
BUSY_BEFORE=$(busy)
cargo bench --bench hot_path -- "$@" 2>&1 | tee bench/results/criterion.txt
BUSY_AFTER=$(busy)
BUSY_BEFORE=$BUSY_BEFORE BUSY_AFTER=$BUSY_AFTER python3 - <<'EOF'
import glob, json, os
rows = []
for path in sorted(glob.glob("target/criterion/*/*/new/estimates.json")):
    d = os.path.dirname(path)
    with open(path) as f:
        est = json.load(f)
    with open(os.path.join(d, "benchmark.json")) as f:
        bench = json.load(f)
    per = 1
    tp = bench.get("throughput") or {}
    if "Elements" in tp:
        per = tp["Elements"]
    mean = est["mean"]["point_estimate"] / per
    lo = est["mean"]["confidence_interval"]["lower_bound"] / per
    hi = est["mean"]["confidence_interval"]["upper_bound"] / per
    med = est["median"]["point_estimate"] / per
    unit = "per record" if per > 1 else ("per 1 KiB payload" if "Bytes" in tp else "per op")
    rows.append((bench["full_id"], mean, lo, hi, med, unit, per))
with open("bench/results/criterion.md", "w") as f:
    f.write("## Micro-benchmarks (criterion, `bash bench/hot_path.sh`)\n\n")
    f.write("Mean time per operation with its 95% confidence interval, and the median. "
            "Batch benchmarks are divided by the batch size. Machine busy with other work: "
            f"{os.environ.get('BUSY_BEFORE', '?')}% just before, {os.environ.get('BUSY_AFTER', '?')}% just after.\n\n")
    f.write("| benchmark | mean ns/op | 95% CI | median ns/op | unit |\n| --- | ---: | ---: | ---: | --- |\n")
    for name, mean, lo, hi, med, unit, per in rows:
        f.write(f"| `{name}` | {mean:,.1f} | {lo:,.1f}-{hi:,.1f} | {med:,.1f} | {unit}{'' if per == 1 else f' (batch of {per:,})'} |\n")
print(open("bench/results/criterion.md").read())
EOF
