#!/usr/bin/env python3
"""resign.py STORE NAME KEYFILE CODE: edits a committed manifest with the Python statement
CODE (the manifest is `m`) and signs it again with the host key, as a version of snap that
wrote it so, or a holder of the key, would have. Checks first that it reproduces the
manifest's own signature, so that a change in how manifests are signed fails here."""
import hashlib
import hmac
import json
import os
import sys

st, name, keyfile, code = sys.argv[1:]
path = os.path.join(st, "catalog", name + ".json")
m = json.load(open(path))
key = open(keyfile, "rb").read()


def sign(doc):
    body = {k: v for k, v in doc.items() if k != "auth"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


assert m["auth"][0]["hmac"] == sign(m), "the helper does not reproduce the manifest's signature"
exec(code)
m["auth"][0]["hmac"] = sign(m)
json.dump(m, open(path, "w"))
