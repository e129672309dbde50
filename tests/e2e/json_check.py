"""json_check.py SCHEMA FILE [--lines]: validates FILE (one JSON document, or with --lines
one per line) against docs/schema/SCHEMA.json with Debian's python3-jsonschema.
Prints what is wrong and exits 1; prints the number of documents checked otherwise."""
import json
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "..", "docs", "schema")


def validator(name):
    store = {}
    for f in os.listdir(SCHEMAS):
        if f.endswith(".json"):
            s = json.load(open(os.path.join(SCHEMAS, f)))
            jsonschema.Draft202012Validator.check_schema(s)
            store[s["$id"]] = s
    schema = store["https://snap.invalid/schema/%s.json" % name]
    resolver = jsonschema.RefResolver(schema["$id"], schema, store=store)
    return jsonschema.Draft202012Validator(schema, resolver=resolver)


def main():
    name, path = sys.argv[1], sys.argv[2]
    lines = "--lines" in sys.argv[3:]
    v = validator(name)
    text = open(path, encoding="utf-8").read()
    docs = [json.loads(l) for l in text.splitlines() if l.strip()] if lines else [json.loads(text)]
    if not docs:
        print("%s: no document" % path)
        return 1
    bad = 0
    for i, d in enumerate(docs):
        for e in v.iter_errors(d):
            bad += 1
            print("%s[%d] %s: %s" % (path, i, "/".join(str(p) for p in e.absolute_path), e.message))
    if bad:
        return 1
    print(len(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
