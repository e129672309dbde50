#!/usr/bin/env python3
"""The layering of the tree, checked: which folder may include which, header names.

    tests/lint/layers.py [ROOT]     prints each broken rule; exits 1 when there is one

The folders form a graph without cycles, from the ground floor up:
common/ < storage/ < catalog/;  common/ < engines/;  catalog/, engines/ < snapshot/ <
restore/ < cmd/. A folder includes its own files and those of the folders below it,
never above. No project header shares its name with another project header, nor with
a header that the compiler finds by that bare name in the system's include directories.
"""
import os
import re
import subprocess
import sys

BELOW = {
    "common": [],
    "storage": ["common"],
    "catalog": ["storage", "common"],
    "engines": ["common"],
    "snapshot": ["catalog", "storage", "engines", "common"],
    "restore": ["snapshot", "catalog", "storage", "engines", "common"],
    "cmd": ["restore", "snapshot", "catalog", "storage", "engines", "common"],
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def system_dirs():
    dirs = ["/usr/include", "/usr/include/x86_64-linux-gnu", "/usr/local/include"]
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "libarchive", "libzstd", "libcurl", "jansson",
                                "inih", "libcrypto", "libpq", "libmariadb", "yaml-0.1", "libxml-2.0"],
                               capture_output=True, text=True, check=False).stdout.split()
        dirs += [f[2:] for f in flags if f.startswith("-I")]
    except OSError:
        pass
    return [os.path.normpath(d) for d in dirs if os.path.isdir(d)]


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    broken = []
    headers = {}
    for folder in BELOW:
        top = os.path.join(root, folder)
        for dirpath, _, names in os.walk(top):
            for name in sorted(names):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if name.endswith(".h"):
                    headers.setdefault(name, []).append(rel)
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                for inc in INCLUDE.findall(text):
                    target = os.path.normpath(os.path.join(dirpath, inc))
                    tfolder = os.path.relpath(target, root).split(os.sep)[0]
                    if not os.path.exists(target):
                        broken.append(f"{rel}: includes \"{inc}\", which is not in the tree")
                    elif tfolder != folder and tfolder not in BELOW[folder]:
                        broken.append(f"{rel}: {folder}/ includes {tfolder}/ (\"{inc}\"), "
                                      f"a folder it must not depend on")
    for name, where in sorted(headers.items()):
        if len(where) > 1:
            broken.append(f"{name}: {len(where)} project headers share this name: {', '.join(where)}")
        for d in system_dirs():
            if os.path.exists(os.path.join(d, name)):
                broken.append(f"{where[0]}: shares its name with the system header {os.path.join(d, name)}")
    for line in broken:
        print(line)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
