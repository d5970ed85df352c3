"""Helpers of bench/way_in.sh: fleets of logins, tokens signed with PyJWT, Kafka topics
and read-back through confluent-kafka, log lines counted per second and kind, and the
summary table.

    python3 bench/way_in_tools.py fleet N DIR            # fleet.csv, logins.csv, mosquitto.txt
    python3 bench/way_in_tools.py mosquitto-hashed N DIR  # passwd.hashed: N ready $7$ entries
    python3 bench/way_in_tools.py tokens N DIR           # jwt.pem (public key), tokens.csv
    python3 bench/way_in_tools.py topics BOOTSTRAP TOPIC...
    python3 bench/way_in_tools.py read-back BOOTSTRAP TOPIC KEYS_FILE SECONDS
    python3 bench/way_in_tools.py log-kinds LOG FROM_UNIX TO_UNIX
    python3 bench/way_in_tools.py summary DIR
"""

import base64
import collections
import hashlib
import json
import os
import re
import secrets
import sys
import time
from datetime import datetime, timezone


def fleet(n, out):
    with open(f"{out}/fleet.csv", "w") as fleet, open(f"{out}/logins.csv", "w") as logins, open(f"{out}/mosquitto.txt", "w") as mosq:
        for i in range(n):
            secret = secrets.token_hex(16)  # a random 128-bit device secret
            fleet.write(f"lock-{i},{secret}\n")
            logins.write(f"lock-{i},lock-{i},{secret}\n")
            mosq.write(f"lock-{i}:{secret}\n")


def mosquitto_hashed(n, out):
    """Ready PBKDF2-SHA512 entries as mosquitto_passwd writes them ($7$, 101 iterations)."""
    with open(f"{out}/passwd.hashed", "w") as f:
        for i in range(n):
            salt = os.urandom(12)
            digest = hashlib.pbkdf2_hmac("sha512", secrets.token_hex(16).encode(), salt, 101)
            f.write(f"lock-{i}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n")


def tokens(n, out):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    open(f"{out}/jwt.pem", "wb").write(pem)
    exp = int(time.time()) + 3600
    with open(f"{out}/tokens.csv", "w") as f:
        for i in range(n):
            f.write(f"lock-{i},lock-{i},{jwt.encode({'sub': f'lock-{i}', 'exp': exp}, key, algorithm='RS256')}\n")


def topics(bootstrap, names):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in names]).values():
        try:
            future.result(10)
        except Exception as e:  # already there
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise


def read_back(bootstrap, topic, keys_file, seconds):
    """Reads TOPIC from the start until every key of KEYS_FILE is there or SECONDS pass;
    prints {expected, found, missing, duplicated} as JSON."""
    from confluent_kafka import Consumer, TopicPartition

    wanted = set(open(keys_file).read().split())
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"way-in-{time.time()}", "enable.auto.commit": False})
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    seen = collections.Counter()
    deadline = time.time() + float(seconds)
    while time.time() < deadline and not wanted <= set(seen):
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            seen[message.key().decode()] += 1
    consumer.close()
    found = wanted & set(seen)
    print(json.dumps({"expected": len(wanted), "found": len(found), "missing": sorted(wanted - found),
                      "duplicated": sum(c - 1 for k, c in seen.items() if k in wanted)}))


LINE = re.compile(r"^(\S+)Z\s+(\w+)\s+(\S+?):\s(.*)$")


def log_kinds(log, start, end):
    """Lines of LOG written between the two Unix times, by kind (target, message, and the
    facility or error code a librdkafka line names): the most in one second, and in all."""
    per_second = collections.Counter()
    totals = collections.Counter()
    for line in open(log, errors="replace"):
        m = LINE.match(line.strip())
        if not m:
            continue
        ts = datetime.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        if not (float(start) <= ts <= float(end)):
            continue
        rest = m.group(4)
        facility = re.search(r"facility=\"?(\w+)", rest)
        code = re.search(r"error=[^:]*?: (\w+) \(|error=(\w+)", rest)
        message = re.split(r"\s\w+=", rest, maxsplit=1)[0][:60]
        if facility:  # librdkafka's own lines, limited by facility
            kind = f"{m.group(3)} / {facility.group(1)}"
        else:
            kind = " / ".join(filter(None, [m.group(3), message, code and (code.group(1) or code.group(2))]))
        per_second[(kind, int(ts))] += 1
        totals[kind] += 1
    worst = collections.Counter()
    for (kind, _), count in per_second.items():
        worst[kind] = max(worst[kind], count)
    print(json.dumps({"seconds": float(end) - float(start), "lines": sum(totals.values()),
                      "kinds": [{"kind": k, "lines": totals[k], "most_in_one_second": worst[k]} for k in sorted(totals)]}))


def summary(out):
    def load(name):
        path = f"{out}/{name}.json"
        return json.load(open(path)) if os.path.exists(path) else None

    rows = []
    def wave(name, index):
        data = load(name)
        return data[index] if data and len(data) > index else None

    def rate(w):
        return f"{w['accepted']:,} of {w['clients']:,} in {w['seconds']:.2f} s ({w['accepted_per_s']:,.0f}/s)" if w else "-"

    def refused(w):
        if not w:
            return "-"
        parts = [f"{n} refused {code}" for code, n in w["refused"].items()]
        if w.get("busy_retries"):
            parts.append(f"told server busy {w['busy_retries']} times, tried again a second later")
        if w["closed_unanswered"] or w["timed_out"]:
            parts.append(f"{w['closed_unanswered'] + w['timed_out']} unanswered")
        return ", ".join(parts) or "none refused"

    def ratio(a, b):
        return f"{a['accepted_per_s'] / b['accepted_per_s']:.2f}x" if a and b and b["accepted_per_s"] else "-"

    def growth(w):
        return f"+{w['rss_growth_mib']:.1f} MiB" if w and w.get("rss_growth_mib") is not None else "-"

    lines = ["| case | hookline | Mosquitto 2.0 (same run) | hookline / Mosquitto | hookline RSS growth |", "| --- | --- | --- | ---: | ---: |"]
    mosq_cold, mosq_warm = wave("mosquitto-logins", 0), wave("mosquitto-logins", 1)
    for label, name, index, ref in [
        ("per-lock logins, PBKDF2 `$7$`, cold", "hookline-pbkdf2", 0, mosq_cold),
        ("the same fleet again (cache warm)", "hookline-pbkdf2", 1, mosq_warm),
        ("per-lock logins, argon2id, cold", "hookline-argon2id", 0, mosq_cold),
        ("the same fleet again (cache warm)", "hookline-argon2id", 1, mosq_warm),
        ("JWT logins (RS256, PyJWT) vs Mosquitto anonymous", "hookline-jwt", 0, wave("mosquitto-anonymous", 0)),
        ("locks under soft 1,024 / hard 20,000 open files", "hookline-files", 0, wave("mosquitto-files", 0)),
        ("locks under soft = hard = 1,024 open files", "hookline-files-hard", 0, wave("mosquitto-files-hard", 0)),
    ]:
        w = wave(name, index)
        if w is None:
            continue
        rows.append(f"| {label} | {rate(w)}; {refused(w)} | {rate(ref)}; {refused(ref)} | {ratio(w, ref)} | {growth(w)} |")
    table = "\n".join(lines + rows)

    outage = []
    for phase in ["frozen", "killed"]:
        h, m = wave(f"hookline-kafka-{phase}", 0), wave(f"mosquitto-kafka-{phase}", 0)
        if h:
            outage.append(f"| Kafka {phase}: 20 new locks | {h['accepted']} of 20 connected, slowest CONNACK {h['slowest_connack_ms']:.0f} ms, "
                          f"{h['reports_acknowledged']} of 20 reports acknowledged | "
                          + (f"{m['accepted']} of 20, slowest CONNACK {m['slowest_connack_ms']:.0f} ms |" if m else "- |"))
    read_back = load("kafka-read-back")
    if read_back:
        outage.append(f"| after Kafka is back | {read_back['found']} of {read_back['expected']} acknowledged reports in Kafka, "
                      f"{len(read_back['missing'])} lost, {read_back['duplicated']} duplicated | (no Kafka) |")
    if outage:
        table += "\n\n| Kafka outage | hookline (cluster node, claim_wait_ms 1000) | Mosquitto 2.0 |\n| --- | --- | --- |\n" + "\n".join(outage)

    imports = load("import")
    if imports:
        table += "\n\n| provisioning | seconds |\n| --- | ---: |\n" + "\n".join(f"| {k} | {v:.1f} |" for k, v in imports.items())

    kinds = load("outage-log")
    if kinds:
        worst = max((k["most_in_one_second"] for k in kinds["kinds"]), default=0)
        table += (f"\n\n{kinds['seconds']:.0f} s with Kafka unreachable: {kinds['lines']} log lines, at most {worst} of one kind in one second\n\n"
                  "| kind | lines | most in one second |\n| --- | ---: | ---: |\n"
                  + "\n".join(f"| {k['kind']} | {k['lines']} | {k['most_in_one_second']} |" for k in kinds["kinds"]))
    open(f"{out}/summary.md", "w").write(table + "\n")
    print(table)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {
        "fleet": lambda: fleet(int(args[0]), args[1]),
        "mosquitto-hashed": lambda: mosquitto_hashed(int(args[0]), args[1]),
        "tokens": lambda: tokens(int(args[0]), args[1]),
        "topics": lambda: topics(args[0], args[1:]),
        "read-back": lambda: read_back(*args),
        "log-kinds": lambda: log_kinds(*args),
        "summary": lambda: summary(args[0]),
    }[command]()
