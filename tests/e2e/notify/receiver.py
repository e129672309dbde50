#!/usr/bin/env python3
"""A loopback webhook receiver for tests/e2e/notify.sh.

receiver.py DIR SECRET_FILE [PEM]: listens on 127.0.0.1 (a free port, written to DIR/port) and
answers by path: /ok 200, /fail 500, /hang never (until the client gives up). Each
request is appended to DIR/log as one JSON line: path, whether X-Snap-Signature is the
HMAC-SHA256 of the body under the secret file's bytes, and the body. With PEM (a
certificate and its key), it speaks TLS.
"""
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR, SECRET = sys.argv[1], open(sys.argv[2], "rb").read()
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        want = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Snap-Signature", "")
        entry = {"path": self.path, "signed": hmac.compare_digest(want, got),
                 "type": self.headers.get("Content-Type"), "body": json.loads(body)}
        with LOCK, open(os.path.join(DIR, "log"), "a") as f:
            f.write(json.dumps(entry) + "\n")
        if self.path == "/hang":
            time.sleep(60)
            return
        self.send_response(200 if self.path == "/ok" else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if len(sys.argv) > 3:  # CERT_AND_KEY_FILE: answer over TLS
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
