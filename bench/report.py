#!/usr/bin/env python3
"""Turns bench/run.sh measurements into the table (stdout) and results.json."""
import json, sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
facts = {k: int(v) for k, v in (a.split("=") for a in sys.argv[3:])}
runs = {}
ip_out = None
for name, tool, secs, kb, out in rows:
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
    runs[(name, tool)] = {"seconds": float(secs), "rss_mib": int(kb) / 1024, "new_bytes": new}

MB = 1e6
def row(label, name, data_bytes, more=""):
    l, r = runs[(name, "lifeline")], runs[(name, "restic")]
    ls, rs = l["seconds"], r["seconds"]
    lmb, rmb = data_bytes / MB / max(ls, 1e-3), data_bytes / MB / max(rs, 1e-3)
    print(f"| {label} | {ls:.2f} s / {lmb:.0f} MB/s / {l['rss_mib']:.0f} MiB | {rs:.2f} s / {rmb:.0f} MB/s / {r['rss_mib']:.0f} MiB | "
          f"{rs / max(ls, 1e-3):.2f}x faster, RSS {l['rss_mib'] / r['rss_mib']:.2f} |{more}")

f = facts
print(f"Dataset: {f['bytes_a'] / MB:.0f} MB (PostgreSQL {f['pg_bytes'] / MB:.0f} MB); after the change {f['bytes_b'] / MB:.0f} MB.")
print()
print("| operation | Lifeline (wall / throughput / peak RSS) | restic | Lifeline vs restic |")
print("|---|---|---|---|")
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
    print(f"| in-place restore after ~1 % change | {ip['seconds']:.2f} s, wrote {res['bytesWritten'] / MB:.1f} MB of "
          f"{res['bytes'] / MB:.0f} MB ({100 * res['bytesWritten'] / max(res['bytes'], 1):.1f} %), "
          f"{res['unchangedFiles']} of {res['files']} files untouched / {ip['rss_mib']:.0f} MiB | "
          f"no in-place restore (full: {runs[('restore', 'restic')]['seconds']:.2f} s) | "
          f"{full / max(ip['seconds'], 1e-3):.2f}x faster than Lifeline's full restore, "
          f"{runs[('restore', 'restic')]['seconds'] / max(ip['seconds'], 1e-3):.2f}x restic's |")
row("full backup to S3", "s3full", f["bytes_b"])
row("restore from S3", "s3restore", f["bytes_b"])
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
json.dump({"facts": facts, "runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()}}, open(sys.argv[2], "w"), indent=1)
