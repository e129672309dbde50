#!/usr/bin/env python3
"""A registry whose token service is on another loopback host, for tests only.

    realm-registry.py --port-file FILE --log FILE [--token-host 127.0.0.2]

The registry listens on 127.0.0.1 and answers every API call without a token with
401 `WWW-Authenticate: Bearer realm="http://TOKEN_HOST:PORT/token"`. The token service
listens on --token-host; it writes one line per token request to --log ("token
Authorization: Basic ..." or "token Authorization: none") and always hands out a token.
With that token the registry serves one manifest for any name and reference. FILE gets
"REGISTRY_PORT TOKEN_PORT" once both listen.
"""
import argparse
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
    "layers": [],
}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
TOKEN = "realm-test-token"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--token-host", default="127.0.0.2")
    opts = ap.parse_args()
    lock = threading.Lock()
    log = open(opts.log, "a")

    class Token(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            with lock:
                log.write("token Authorization: %s\n" % (self.headers.get("Authorization") or "none"))
                log.flush()
            body = json.dumps({"token": TOKEN, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    tok = ThreadingHTTPServer((opts.token_host, 0), Token)
    realm = "http://%s:%d/token" % (opts.token_host, tok.server_address[1])

    class Registry(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def answer(self, head):
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="%s",service="realm-test"' % realm)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if "/manifests/" not in self.path:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Docker-Content-Digest", DIGEST)
            self.send_header("Content-Length", str(len(MANIFEST)))
            self.end_headers()
            if not head:
                self.wfile.write(MANIFEST)

        def do_GET(self):
            self.answer(False)

        def do_HEAD(self):
            self.answer(True)

    reg = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=tok.serve_forever, daemon=True).start()
    with open(opts.port_file + ".tmp", "w") as f:
        f.write("%d %d\n" % (reg.server_address[1], tok.server_address[1]))
    os.rename(opts.port_file + ".tmp", opts.port_file)
    try:
        reg.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
