#!/usr/bin/env python3
"""Reads the +listType/+listMapKey/+patchMergeKey/+patchStrategy/+mapType/+structType
markers of the upstream generated.proto files (kubernetes/api, kubernetes/apimachinery)
into src/sim/proto/k8s-lists.json: per message, its atomic marker and, per field, how the
field merges. The API server's schemas carry the same markers (as x-kubernetes-* and
x-kubernetes-patch-* extensions); server-side apply and strategic merge patch read them.

Usage: scripts/k8s-list-types.py OUT FILE.proto...
"""
import json
import re
import sys

out_path, files = sys.argv[1], sys.argv[2:]
result = {}
field_re = re.compile(r"^\s*(optional|repeated)?\s*(map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+")
for path in files:
    package = ""
    message = None
    markers = []
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if s.startswith("package "):
            package = s[len("package "):].rstrip(";").strip()
            continue
        if s.startswith("//"):
            m = re.match(r"//\s*\+(\w+)=(\S+)", s)
            if m:
                markers.append((m.group(1), m.group(2)))
            continue
        if s.startswith("message "):
            message = package + "." + s.split()[1]
            entry = result.setdefault(message, {"fields": {}})
            if ("structType", "atomic") in markers:
                entry["atomic"] = True
            markers = []
            continue
        if s == "}":
            markers = []
            continue
        m = field_re.match(s)
        if m and message:
            field = m.group(3)
            info = {}
            keys = []
            for k, v in markers:
                if k == "listType":
                    info["listType"] = v
                elif k == "listMapKey":
                    keys.append(v)
                elif k == "patchMergeKey":
                    info["patchMergeKey"] = v
                elif k == "patchStrategy":
                    info["patchStrategy"] = v
                elif k == "mapType" and v == "atomic":
                    info["mapType"] = "atomic"
                elif k == "structType" and v == "atomic":
                    info["structType"] = "atomic"
            if keys:
                info["listMapKeys"] = keys
            if info:
                result[message]["fields"][field] = info
            markers = []
        elif s and not s.startswith("option") and not s.startswith("import") and not s.startswith("syntax"):
            markers = []
compact = {k: v for k, v in result.items() if v["fields"] or v.get("atomic")}
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(compact, f, sort_keys=True, separators=(",", ":"))
    f.write("\n")
print(f"wrote {out_path}: {len(compact)} messages")
