#!/usr/bin/env bash
# `make bench`: Lifeline against restic (Debian's package) on the same data, in the same
# run, on this machine. Prints a table with Lifeline/restic ratios and writes the raw
# figures to $BENCH_DIR/results.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$root/target/bench}
lifeline=$root/target/release/lifeline
mkdir -p "$work"
if ! command -v restic >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q restic >/dev/null; else echo "install restic (apt-get install restic)" >&2; exit 1; fi
fi
export LIFELINE_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
results=$work/results.tsv
: > "$results"

# measure NAME TOOL CMD...: wall seconds and peak RSS of one command, then the seconds a
# `sync` right after it takes (the command's data still not on the device: wall + sync is
# the time until its result is durable), appended to results.
measure() {
  local name=$1 tool=$2; shift 2
  local out=$work/out-$name-$tool.json
  sync  # both tools start with no writeback pending from what ran before
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$out" 2> "$work/err-$name-$tool" || { cat "$work/err-$name-$tool" >&2; exit 1; }
  local t0 t1; t0=$(date +%s.%N); sync; t1=$(date +%s.%N)
  read -r secs kb < "$work/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$tool" "$secs" "$kb" "$out" "$(python3 -c "print(round($t1 - $t0, 3))")" >> "$results"
}

# The page cache is put in the same state for both tools before the full backups:
# warm (every file read once just before), and, when run as root, cold (caches dropped).
# Without this the first tool reads freshly generated data the kernel may have evicted
# and the second reads what the first just cached.
# Restores start cold too (when root): a restore after a disaster reads a repository that
# is not in the page cache, and restic's repository, written through the page cache,
# would otherwise still be there while Lifeline's packs (written with O_DIRECT) are not.
warm() { find "$1" -type f -print0 | xargs -0 cat > /dev/null; }
cold() { sync; if [ "$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }

echo "generating the dataset (PostgreSQL with pgbench, random files, JSON logs)..." >&2
rm -rf "$work/data" "$work/repo-"* "$work/restore-"*
"$root/bench/dataset.sh" "$work"
data=$work/data
bytes_a=$(du -sb "$data" | cut -f1)
pg_bytes=$(du -sb "$data/pg" | cut -f1)
cp -a "$data/pg" "$work/pg-a"

# The disk's rate for durable writes, before the runs and after them: a restore is
# durable when it returns, so on a slow day for the disk, its restore rows are bound by
# this (restic's are not: its data is still in the page cache).
disk_rate() { local r; sync; r=$(python3 "$root/bench/disk.py" "$work/disk-probe"); [ "$r" = n/a ] && r=0; echo "$r"; }
disk_before=$(disk_rate)

"$lifeline" repo init "file://$work/repo-l" >/dev/null 2>&1
restic init -q -r "$work/repo-r"
"$lifeline" repo init "file://$work/repo-lpg" >/dev/null 2>&1
restic init -q -r "$work/repo-rpg"

if [ "$(id -u)" = 0 ]; then
  echo "full backup from a cold page cache..." >&2
  "$lifeline" repo init "file://$work/repo-lc" >/dev/null 2>&1
  restic init -q -r "$work/repo-rc"
  cold; measure coldfull lifeline "$lifeline" repo backup --json "file://$work/repo-lc" "$data"
  cold; measure coldfull restic restic -r "$work/repo-rc" backup --json "$data"
fi
echo "full backup..." >&2
warm "$data"; measure full lifeline "$lifeline" repo backup --json "file://$work/repo-l" "$data"
warm "$data"; measure full restic restic -r "$work/repo-r" backup --json "$data"
size_l_full=$(du -sb "$work/repo-l" | cut -f1); size_r_full=$(du -sb "$work/repo-r" | cut -f1)
echo "unchanged re-backup..." >&2
measure unchanged lifeline "$lifeline" repo backup --json "file://$work/repo-l" "$data"
measure unchanged restic restic -r "$work/repo-r" backup --json "$data"
echo "PostgreSQL files alone, state A..." >&2
measure pgfull lifeline "$lifeline" repo backup --json "file://$work/repo-lpg" "$data/pg"
measure pgfull restic restic -r "$work/repo-rpg" backup --json "$data/pg"

echo "changing about 1 % (pgbench transactions, logs, random patches)..." >&2
"$root/bench/dataset.sh" "$work" change
bytes_b=$(du -sb "$data" | cut -f1)
echo "incremental backup..." >&2
before_l=$(du -sb "$work/repo-l" | cut -f1); before_r=$(du -sb "$work/repo-r" | cut -f1)
measure incremental lifeline "$lifeline" repo backup --json "file://$work/repo-l" "$data"
measure incremental restic restic -r "$work/repo-r" backup --json "$data"
grow_l=$(( $(du -sb "$work/repo-l" | cut -f1) - before_l )); grow_r=$(( $(du -sb "$work/repo-r" | cut -f1) - before_r ))
measure pgincr lifeline "$lifeline" repo backup --json "file://$work/repo-lpg" "$data/pg"
measure pgincr restic restic -r "$work/repo-rpg" backup --json "$data/pg"

echo "restore..." >&2
cold; measure restore lifeline "$lifeline" repo restore --json "file://$work/repo-l" latest "$work/restore-l"
cold; measure restore restic restic -r "$work/repo-r" restore latest --target "$work/restore-r"
diff -r --no-dereference "$data" "$work/restore-l" > /dev/null || { echo "lifeline restore differs from the data!" >&2; exit 1; }
size_l=$(du -sb "$work/repo-l" | cut -f1); size_r=$(du -sb "$work/repo-r" | cut -f1)
rm -rf "$work/restore-l" "$work/restore-r"

# In place (what a warm standby's refresh does): the first state restored, then brought
# to the changed one. restic 0.14 has no in-place restore; the peer is a full restore.
echo "in-place restore of the ~1 % change..." >&2
first=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["result"]["id"])' "$work/out-full-lifeline.json")
"$lifeline" repo restore "file://$work/repo-l" "$first" "$work/restore-ip" >/dev/null 2>&1
measure inplace lifeline "$lifeline" repo restore --json --in-place "file://$work/repo-l" latest "$work/restore-ip"
diff -r --no-dereference "$data" "$work/restore-ip" > /dev/null || { echo "in-place restore differs from the data!" >&2; exit 1; }
rm -rf "$work/restore-ip"

# both_ways NAME DIR: one more dataset (bench/dataset.sh DIR's NAME) into new repositories
# of both tools: full backup, an unchanged re-backup, and a restore, checked against the
# source; sets NAME_bytes, size_lNAME and size_rNAME.
both_ways() {
  local name=$1 src=$work/$1 l="file://$work/repo-l$1" r="$work/repo-r$1"
  "$root/bench/dataset.sh" "$work" "$name"
  printf -v "${name}_bytes" %s "$(du -sb --apparent-size "$src" | cut -f1)"
  "$lifeline" repo init "$l" >/dev/null 2>&1
  restic init -q -r "$r"
  warm "$src"; measure "${name}full" lifeline "$lifeline" repo backup --json "$l" "$src"
  warm "$src"; measure "${name}full" restic restic -r "$r" backup --json "$src"
  measure "${name}unchanged" lifeline "$lifeline" repo backup --json "$l" "$src"
  measure "${name}unchanged" restic restic -r "$r" backup --json "$src"
  cold; measure "${name}restore" lifeline "$lifeline" repo restore --json "$l" latest "$work/restore-l$name"
  cold; measure "${name}restore" restic restic -r "$r" restore latest --target "$work/restore-r$name"
  diff -r --no-dereference "$src" "$work/restore-l$name" > /dev/null || { echo "lifeline restore of $name differs!" >&2; exit 1; }
  printf -v "size_l$name" %s "$(du -sb "$work/repo-l$name" | cut -f1)"
  printf -v "size_r$name" %s "$(du -sb "$r" | cut -f1)"
}
echo "200,000 small files..." >&2
both_ways small
echo "one 2 GiB file..." >&2
both_ways large

echo "S3 (SeaweedFS on loopback)..." >&2
s3dir=$work/s3; "$root/scripts/s3.sh" stop "$s3dir" 2>/dev/null || true; rm -rf "$s3dir"
endpoint=$("$root/scripts/s3.sh" start "$s3dir" 24000 bench)
trap '"$root/scripts/s3.sh" stop "$s3dir"' EXIT
export AWS_ACCESS_KEY_ID=lifelinetest AWS_SECRET_ACCESS_KEY=lifelinetestsecret0123456789 LIFELINE_S3_ENDPOINT=$endpoint
"$lifeline" repo init s3://bench/l >/dev/null 2>&1
restic init -q -r "s3:$endpoint/bench/r"
warm "$data"; measure s3full lifeline "$lifeline" repo backup --json s3://bench/l "$data"
warm "$data"; measure s3full restic restic -r "s3:$endpoint/bench/r" backup --json "$data"
cold; measure s3restore lifeline "$lifeline" repo restore --json s3://bench/l latest "$work/restore-l"
cold; measure s3restore restic restic -r "s3:$endpoint/bench/r" restore latest --target "$work/restore-r"
diff -r --no-dereference "$data" "$work/restore-l" > /dev/null || { echo "lifeline restore from S3 differs from the data!" >&2; exit 1; }
# Deleting gigabytes makes the filesystem discard their blocks (the root filesystem here
# is mounted with `discard`), which loads the disk for a while: only at the end.
rm -rf "$work/restore-l" "$work/restore-r" "$work/pg-a" "$work/repo-lc" "$work/repo-rc" \
  "$work/restore-lsmall" "$work/restore-rsmall" "$work/repo-lsmall" "$work/repo-rsmall" \
  "$work/restore-llarge" "$work/restore-rlarge" "$work/repo-llarge" "$work/repo-rlarge"

disk_after=$(disk_rate)
rm -f "$work/disk-probe"
python3 "$root/bench/report.py" "$results" "$work/results.json" \
  disk_before="$disk_before" disk_after="$disk_after" \
  bytes_a="$bytes_a" bytes_b="$bytes_b" pg_bytes="$pg_bytes" \
  size_l_full="$size_l_full" size_r_full="$size_r_full" size_l="$size_l" size_r="$size_r" \
  grow_l="$grow_l" grow_r="$grow_r" small_bytes="$small_bytes" large_bytes="$large_bytes" \
  size_ls="$size_lsmall" size_rs="$size_rsmall" size_lg="$size_llarge" size_rg="$size_rlarge"
