#!/usr/bin/env python3
"""Runs Argo CD health checks the way Argo CD does (Lua 5.1, the object as global `obj`),
against the cases of each kind's health_test.yaml (Argo CD's own layout:
resource_customizations/<group>/<Kind>/{health.lua,health_test.yaml,testdata/}).
Prints one line per case; exits 1 if any case's status or message differs."""
import pathlib
import sys

import lupa.lua51 as lua51
import yaml


def to_lua(rt, v):
    if isinstance(v, dict):
        return rt.table_from({k: to_lua(rt, x) for k, x in v.items()})
    if isinstance(v, list):
        return rt.table_from([to_lua(rt, x) for x in v])
    return v


def health(script, obj):
    # Argo CD runs scripts without the os and io libraries.
    rt = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    g = rt.globals()
    g.os, g.io, g.require, g.dofile, g.loadfile = None, None, None, None, None
    g.obj = to_lua(rt, obj)
    hs = rt.execute(script)
    return {"status": hs["status"], "message": hs["message"]}


def main(root):
    failed = cases = 0
    kinds = sorted(pathlib.Path(root).glob("*/*/health.lua"))
    if not kinds:
        print(f"no health checks under {root}")
        return 1
    for script_path in kinds:
        kind_dir = script_path.parent
        script = script_path.read_text()
        tests = yaml.safe_load((kind_dir / "health_test.yaml").read_text())["tests"]
        for t in tests:
            cases += 1
            obj = yaml.safe_load((kind_dir / t["inputPath"]).read_text())
            got = health(script, obj)
            want = t["healthStatus"]
            ok = got["status"] == want["status"] and ("message" not in want or got["message"] == want["message"])
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {kind_dir.name}/{t['inputPath']}: {got['status']}: {got['message']}"
                  + ("" if ok else f" (want {want})"))
    print(f"{cases} cases, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
