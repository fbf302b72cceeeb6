#!/usr/bin/env bash
# Generates the benchmark dataset (about 2 GiB): a real PostgreSQL data directory made
# with pgbench, incompressible files of mixed sizes, and JSON-lines logs.
#   bench/dataset.sh DIR        state A into DIR/data (skipped if DIR/data/.complete exists)
#   bench/dataset.sh DIR change state B: ~1 % change (pgbench transactions + CHECKPOINT,
#                               appended and new logs, patched random files, deletions)
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
