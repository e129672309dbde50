#!/usr/bin/env python3
"""Replace one component's data in a real snapshot with a crafted part.

    craft.py STORE SNAPSHOT [--component NAME] [--info JSON] [--keep-stats] < ENTRIES.json

ENTRIES is a JSON list; each item has "name" (the stored name, as the tar entry is
named), "type" (dir, file, symlink, hardlink, fifo, chr, blk), and as fits "data",
"target" (symlink or hard-link target), "mode" (an int), "rdev" ([major, minor]), "pax"
(extra pax headers, such as LIBARCHIVE.xattr.NAME or SCHILY.fflags).
The part is written as a pax tar (python's tarfile), compressed with the zstd CLI, put in
place of the component's parts, and the manifest gets its size, SHA-256, entry count and
stats (as a revert counts them), so that only the crafted content is hostile.
--info replaces the component's info with the JSON given; "-" leaves it.
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile


def build_tar(entries, path):
    stats = {"files": 0, "directories": 0, "symlinks": 0, "bytes": 0}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            i = tarfile.TarInfo(e["name"])
            i.mtime = 1700000000
            i.uid = i.gid = 0
            i.uname = i.gname = "root"
            kind = e["type"]
            data = None
            if kind == "dir":
                i.type, i.mode = tarfile.DIRTYPE, e.get("mode", 0o755)
                stats["directories"] += 1
            elif kind == "file":
                data = e.get("data", "").encode()
                i.size, i.mode = len(data), e.get("mode", 0o644)
                stats["files"] += 1
                stats["bytes"] += len(data)
            elif kind == "symlink":
                i.type, i.linkname, i.mode = tarfile.SYMTYPE, e["target"], 0o777
                stats["symlinks"] += 1
            elif kind == "hardlink":
                i.type, i.linkname, i.mode = tarfile.LNKTYPE, e["target"], e.get("mode", 0o644)
                stats["files"] += 1
            elif kind in ("fifo", "chr", "blk"):
                i.type = {"fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}[kind]
                i.mode = e.get("mode", 0o600)
                i.devmajor, i.devminor = e.get("rdev", [0, 0])
            else:
                raise SystemExit("unknown type " + kind)
            if "pax" in e:  # extra pax headers: xattrs, file flags
                i.pax_headers = dict(e["pax"])
            tf.addfile(i, io.BytesIO(data) if data is not None else None)
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("snapshot")
    ap.add_argument("--component")
    ap.add_argument("--info", default="-")
    ap.add_argument("--keep-stats", action="store_true")
    a = ap.parse_args()
    entries = json.load(sys.stdin)
    mpath = os.path.join(a.store, "catalog", a.snapshot + ".json")
    m = json.load(open(mpath))
    comp = next(c for c in m["components"] if a.component in (None, c["name"]))
    with tempfile.TemporaryDirectory() as tmp:
        tar = os.path.join(tmp, "part.tar")
        stats = build_tar(entries, tar)
        raw = os.path.getsize(tar)
        for p in comp["parts"][1:]:
            os.unlink(os.path.join(a.store, p["key"]))
        key = comp["parts"][0]["key"]
        subprocess.run(["zstd", "-q", "-f", tar, "-o", os.path.join(a.store, key)], check=True)
    data = open(os.path.join(a.store, key), "rb").read()
    comp["parts"] = [{"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "entries": len(entries), "raw_bytes": raw}]
    if not a.keep_stats:
        comp["stats"] = {**comp.get("stats", {}), **stats}
    if a.info != "-":
        comp["info"] = json.loads(a.info)
    with open(mpath + ".new", "w") as f:
        json.dump(m, f)
    os.rename(mpath + ".new", mpath)


if __name__ == "__main__":
    main()
