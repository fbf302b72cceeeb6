#!/usr/bin/env python3
"""Turns bench/run.sh measurements into the table (stdout) and results.json."""
import json, os, sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
facts = {k: int(v) for k, v in (a.split("=") for a in sys.argv[3:])}
runs = {}
ip_out = None
for name, tool, secs, kb, out, sync in rows:
    if (name, tool) == ("inplace", "lifeline"):
        ip_out = out
    new = None
    text = open(out).read()
    if tool == "lifeline":
        try:
            res = json.loads(text.strip().splitlines()[-1])["result"]
            new = res.get("summary", {}).get("newBytes")
        except Exception:
            pass
    else:
        for line in text.splitlines():
            try:
                j = json.loads(line)
            except Exception:
                continue
            if j.get("message_type") == "summary":
                new = j.get("data_added")
    runs[(name, tool)] = {"seconds": float(secs), "durable": float(secs) + float(sync), "rss_mib": int(kb) / 1024,
                          "new_bytes": new}

MB = 1e6
def ratio(name, key="seconds"):
    return runs[(name, "restic")][key] / max(runs[(name, "lifeline")][key], 1e-3)

def row(label, name, data_bytes, more=""):
    l, r = runs[(name, "lifeline")], runs[(name, "restic")]
    def cell(x):
        return f"{x['seconds']:.2f} s / {x['durable']:.2f} s / {data_bytes / MB / max(x['seconds'], 1e-3):.0f} MB/s / {x['rss_mib']:.0f} MiB"
    print(f"| {label} | {cell(l)} | {cell(r)} | {ratio(name):.2f}x | {ratio(name, 'durable'):.2f}x | "
          f"{l['rss_mib'] / r['rss_mib']:.2f} |{more}")

def machine():
    """The CPU's model, its cores and the vector and hashing instructions that set the
    two tools' speeds apart (BLAKE3 runs wider with AVX-512; restic's SHA-256 is far
    faster with the SHA extensions): figures differ from one machine to the next."""
    model, flags = "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    sha = ", SHA extensions" if "sha_ni" in flags else ""
    return f"{model}, {os.cpu_count()} cores, {isa}{sha}"

f = facts
print(f"Machine: {machine()}.")
print(f"Dataset: {f['bytes_a'] / MB:.0f} MB (PostgreSQL {f['pg_bytes'] / MB:.0f} MB); after the change {f['bytes_b'] / MB:.0f} MB.")
print()
print("Each cell: the command's wall time / the time until its result is durable (wall + a `sync` run right")
print("after it) / throughput by wall time / peak RSS. Ratios: restic's time over Lifeline's (above 1: Lifeline")
print("is faster); RSS: Lifeline's over restic's.")
print()
if f.get("disk_before") and f.get("disk_after"):
    slow = min(f["disk_before"], f["disk_after"])
    print(f"Disk, this run: 1 GiB written with O_DIRECT and synced at {f['disk_before']} MB/s before the runs, "
          f"{f['disk_after']} MB/s after them. At {slow} MB/s, the restored data ({f['bytes_b'] / MB:.0f} MB) "
          f"take {f['bytes_b'] / MB / slow:.1f} s to write: a restore that is durable when it returns takes at least that long.")
    print()
print("| operation | Lifeline | restic | faster, wall | faster, until durable | RSS ratio |")
print("|---|---|---|---|---|---|")
row("full backup", "full", f["bytes_a"])
if ("coldfull", "lifeline") in runs:
    row("full backup, cold page cache", "coldfull", f["bytes_a"])
row("unchanged re-backup", "unchanged", f["bytes_a"])
row("backup after ~1 % change", "incremental", f["bytes_b"])
row("restore", "restore", f["bytes_b"])
if ("inplace", "lifeline") in runs:
    ip = runs[("inplace", "lifeline")]
    res = json.loads(open(ip_out).read().strip().splitlines()[-1])["result"]["summary"]
    full = runs[("restore", "lifeline")]["seconds"]
    print(f"| in-place restore after ~1 % change | {ip['seconds']:.2f} s / {ip['durable']:.2f} s, wrote {res['bytesWritten'] / MB:.1f} MB of "
          f"{res['bytes'] / MB:.0f} MB ({100 * res['bytesWritten'] / max(res['bytes'], 1):.1f} %), "
          f"{res['unchangedFiles']} of {res['files']} files untouched / {ip['rss_mib']:.0f} MiB | "
          f"no in-place restore (full: {runs[('restore', 'restic')]['seconds']:.2f} s) | "
          f"{full / max(ip['seconds'], 1e-3):.2f}x faster than Lifeline's full restore, "
          f"{runs[('restore', 'restic')]['seconds'] / max(ip['seconds'], 1e-3):.2f}x restic's | | |")
row("full backup to S3", "s3full", f["bytes_b"])
row("restore from S3", "s3restore", f["bytes_b"])
row("full backup, 200,000 small files", "smallfull", f["small_bytes"])
row("unchanged re-backup, 200,000 small files", "smallunchanged", f["small_bytes"])
row("restore, 200,000 small files", "smallrestore", f["small_bytes"])
row("full backup, one 2 GiB file", "largefull", f["large_bytes"])
row("unchanged re-backup, one 2 GiB file", "largeunchanged", f["large_bytes"])
row("restore, one 2 GiB file", "largerestore", f["large_bytes"])
print()
pl, pr = runs[("pgincr", "lifeline")]["new_bytes"] or 0, runs[("pgincr", "restic")]["new_bytes"] or 0
print(f"New data after the change, PostgreSQL files only (uncompressed chunk bytes): Lifeline {pl / MB:.1f} MB "
      f"({100 * pl / f['pg_bytes']:.1f} % of the PostgreSQL files), restic {pr / MB:.1f} MB ({100 * pr / f['pg_bytes']:.1f} %); ratio {pl / max(pr, 1):.2f}")
il, ir = runs[("incremental", "lifeline")]["new_bytes"] or 0, runs[("incremental", "restic")]["new_bytes"] or 0
print(f"New data after the change, whole dataset: Lifeline {il / MB:.1f} MB, restic {ir / MB:.1f} MB; "
      f"repository growth Lifeline {f['grow_l'] / MB:.1f} MB, restic {f['grow_r'] / MB:.1f} MB")
print(f"Repository size after the full backup: Lifeline {f['size_l_full'] / MB:.1f} MB, restic {f['size_r_full'] / MB:.1f} MB "
      f"(ratio {f['size_l_full'] / f['size_r_full']:.3f}); after all runs: {f['size_l'] / MB:.1f} MB vs {f['size_r'] / MB:.1f} MB "
      f"(ratio {f['size_l'] / f['size_r']:.3f})")
print(f"Repository size, 200,000 small files: Lifeline {f['size_ls'] / MB:.1f} MB, restic {f['size_rs'] / MB:.1f} MB "
      f"(ratio {f['size_ls'] / f['size_rs']:.3f}); one 2 GiB file: {f['size_lg'] / MB:.1f} MB vs {f['size_rg'] / MB:.1f} MB "
      f"(ratio {f['size_lg'] / f['size_rg']:.3f})")

# The targets, each checked against this run.
rss = max(v["rss_mib"] for (n, t), v in runs.items() if t == "lifeline")
def faster(label, name, need, key="seconds"):
    return (label, f"{ratio(name, key):.2f}x", ratio(name, key) >= need)
new_ratio = pl / max(pr, 1)
targets = [
    faster("full backup >= 3x restic", "full", 3.0),
    faster("full backup, 200,000 small files >= 2x restic", "smallfull", 2.0),
    faster("restore >= 1.5x restic by wall time", "restore", 1.5),
    faster("restore not slower than restic until durable", "restore", 1.0, "durable"),
    faster("restore, 200,000 small files >= 1.5x restic by wall time", "smallrestore", 1.5),
    faster("restore, 200,000 small files not slower until durable", "smallrestore", 1.0, "durable"),
    faster("restore from S3 >= 1.5x restic", "s3restore", 1.5),
    faster("restore, one large file >= 2x restic", "largerestore", 2.0),
    ("peak RSS <= 128 MiB in every row", f"largest {rss:.0f} MiB", rss <= 128),
    ("repository size <= restic's", f"{f['size_l'] / f['size_r']:.3f}", f["size_l"] <= f["size_r"]),
    ("new data after the 1 % database change <= 0.25x restic's", f"{new_ratio:.2f}x", new_ratio <= 0.25),
]
print()
print("Targets:")
for label, shown, ok in targets:
    print(f"  [{'met' if ok else 'MISSED'}] {label}: {shown}")
json.dump({"facts": facts, "runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()}}, open(sys.argv[2], "w"), indent=1)
