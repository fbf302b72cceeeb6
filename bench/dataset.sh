#!/usr/bin/env bash
# Generates the benchmark dataset (about 2 GiB): a real PostgreSQL data directory made
# with pgbench, incompressible files of mixed sizes, and JSON-lines logs.
#   bench/dataset.sh DIR        state A into DIR/data (skipped if DIR/data/.complete exists)
#   bench/dataset.sh DIR change state B: ~1 % change (pgbench transactions + CHECKPOINT,
#                               appended and new logs, patched random files, deletions)
#   bench/dataset.sh DIR small  DIR/small: 200,000 JSON files of 200 B to 12 KB in 400
#                               directories (a chat-attachment store)
#   bench/dataset.sh DIR large  DIR/large/volume.img: one 2 GiB file (a database image:
#                               half incompressible, half JSON records)
set -euo pipefail
mkdir -p "$1"; dir=$(cd "$1" && pwd); data=$dir/data
pgbin=$(dirname "$(command -v pg_ctl || echo /usr/lib/postgresql/15/bin/pg_ctl)")
sock=$dir/pg-socket
# PostgreSQL refuses to run as root: run it as nobody then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
pg() { as_pg "$pgbin/pg_ctl" -D "$data/pg" -o "-k $sock -p 54329 -c listen_addresses=''" -l "$sock/pg.log" -w "$@" >/dev/null; }
psql_() { psql -h "$sock" -p 54329 -U bench -d postgres -q "$@"; }
prepare_pg_dirs() {
  mkdir -p "$sock" "$data/pg"
  if [ "$(id -u)" = 0 ]; then chown nobody "$sock" "$data/pg"; fi
}

if [ "${2:-}" = small ]; then
  [ -f "$dir/small/.complete" ] && exit 0
  rm -rf "$dir/small"
  python3 - "$dir/small" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(16)
words = [''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(r.randrange(2, 11))) for _ in range(5000)]
# A long text to cut message bodies from, so every file differs (no deduplication between
# files) yet compresses like chat text.
text = ' '.join(r.choice(words) for _ in range(4_000_000))
for d in range(400):
    sub = f"{root}/room-{d:03d}"
    os.makedirs(sub)
    for i in range(500):
        size = r.randrange(200, 12_000)
        at = r.randrange(len(text) - size)
        head = '{"id":"%08x-%04d","room":%d,"ts":"2026-11-%02dT%02d:%02d:%02dZ","from":"u%d","body":"' % (
            r.getrandbits(32), i, d, r.randrange(1, 31), r.randrange(24), r.randrange(60), r.randrange(60), r.randrange(10**5))
        body = text[at:at + max(0, size - len(head) - 3)]
        with open(f"{sub}/msg-{i:04d}.json", "w") as f:
            f.write(head + body + '"}\n')
PY
  touch "$dir/small/.complete"
  exit 0
fi

if [ "${2:-}" = large ]; then
  [ -f "$dir/large/.complete" ] && exit 0
  rm -rf "$dir/large"; mkdir -p "$dir/large"
  python3 - "$dir/large/volume.img" <<'PY'
import os, random, sys
r = random.Random(17)
rec = '{"order":%d,"customer":"c%06d","total":%d.%02d,"status":"%s","items":[%d,%d,%d]}\n'
with open(sys.argv[1], "wb") as f:
    for mib in range(2048):
        if mib % 2 == 0:
            f.write(os.urandom(1 << 20))
        else:
            lines = []; size = 0
            while size < 1 << 20:
                s = rec % (r.randrange(10**9), r.randrange(10**6), r.randrange(1000), r.randrange(100),
                           r.choice(["paid", "shipped", "open"]), r.randrange(10**4), r.randrange(10**4), r.randrange(10**4))
                lines.append(s); size += len(s)
            f.write("".join(lines).encode()[:1 << 20])
PY
  touch "$dir/large/.complete"
  exit 0
fi

if [ "${2:-}" = change ]; then
  prepare_pg_dirs
  pg start
  pgbench -h "$sock" -p 54329 -U bench -n -t 400 postgres >/dev/null
  psql_ -c CHECKPOINT
  pg stop
  python3 - "$data" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(7)
def log_lines(n, seed):
    rr = random.Random(seed); out = []; size = 0
    while size < n:
        s = ('{"ts":"2026-11-21T%02d:%02d:%02d.%03dZ","level":"%s","msg":"%s","latency_ms":%d,"user":"u%d","path":"/api/v1/orders/%d"}\n'
             % (rr.randrange(24), rr.randrange(60), rr.randrange(60), rr.randrange(1000), rr.choice(["info","warn","debug"]),
                rr.choice(["request served","cache miss","connection reset","checkpoint complete"]), rr.randrange(2000), rr.randrange(10**5), rr.randrange(10**6)))
        out.append(s); size += len(s)
    return "".join(out)
with open(f"{d}/logs/app-00.log", "a") as f: f.write(log_lines(3 << 20, 101))
with open(f"{d}/logs/app-new.log", "w") as f: f.write(log_lines(3 << 20, 102))
for name in ("big-0", "mid-3"):
    with open(f"{d}/random/{name}", "r+b") as f:
        size = os.path.getsize(f"{d}/random/{name}")
        f.seek(r.randrange(size - (1 << 20))); f.write(os.urandom(1 << 20))
with open(f"{d}/random/new-4m", "wb") as f: f.write(os.urandom(4 << 20))
for name in ("small-0000", "small-0001", "small-0002"):
    os.remove(f"{d}/random/{name}")
PY
  exit 0
fi

[ -f "$data/.complete" ] && exit 0
rm -rf "$data"; mkdir -p "$data/random" "$data/logs"
prepare_pg_dirs
as_pg "$pgbin/initdb" -D "$data/pg" -U bench --no-sync >/dev/null
pg start
pgbench -h "$sock" -p 54329 -U bench -i -s 52 -q postgres >/dev/null 2>&1
for _ in 1 2; do pgbench -h "$sock" -p 54329 -U bench -n -t 2000 postgres >/dev/null; done
psql_ -c CHECKPOINT
pg stop
python3 - "$data" <<'PY'
import os, random, sys
d = sys.argv[1]
def write(name, n):
    with open(f"{d}/random/{name}", "wb") as f: f.write(os.urandom(n))
for i in range(4): write(f"big-{i}", 64 << 20)
for i in range(8): write(f"mid-{i}", 16 << 20)
for i in range(64): write(f"one-{i:02d}", 1 << 20)
for i in range(512): write(f"k64-{i:03d}", 64 << 10)
for i in range(2048): write(f"small-{i:04d}", 4 << 10)
write("odd-12m", 12 << 20)
rr = random.Random(1)
tpl = '{"ts":"2026-11-20T%02d:%02d:%02d.%03dZ","level":"%s","msg":"%s","latency_ms":%d,"user":"u%d","path":"/api/v1/orders/%d"}\n'
for i in range(50):
    with open(f"{d}/logs/app-{i:02d}.log", "w") as f:
        size = 0; buf = []
        while size < 10 << 20:
            s = tpl % (rr.randrange(24), rr.randrange(60), rr.randrange(60), rr.randrange(1000), rr.choice(["info","warn","debug"]),
                       rr.choice(["request served","cache miss","connection reset","checkpoint complete"]), rr.randrange(2000), rr.randrange(10**5), rr.randrange(10**6))
            buf.append(s); size += len(s)
        f.write("".join(buf))
PY
touch "$data/.complete"
