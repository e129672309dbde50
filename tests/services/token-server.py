#!/usr/bin/env python3
"""A token server for the distribution registry's token authentication, for tests only.

GET /token?service=S&scope=repository:NAME:ACTIONS with basic credentials answers
{"token": JWT}, the JWT signed with RS256 by a key whose certificate the registry trusts
(its auth.token.rootcertbundle) and carried in the x5c header. Wrong credentials get 401;
no credentials get a token without access, as a registry for private images would.
Signing uses the openssl command so that only the standard library is needed.
"""
import argparse
import base64
import binascii
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der(path):
    pem = open(path).read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("token-server: " + (fmt % args) + "\n")

    def do_GET(self):
        opts = self.server.opts
        url = urlparse(self.path)
        if url.path != "/token":
            self.send_error(404)
            return
        q = parse_qs(url.query)
        user = None
        hdr = self.headers.get("Authorization", "")
        if hdr.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(hdr[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                u, p = "", None
            if u != opts.user or p != opts.password:
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"details":"incorrect username or password"}')
                return
            user = u
        access = []
        for scope in q.get("scope", []):
            parts = scope.split(":")
            if len(parts) >= 3 and parts[0] == "repository" and user is not None:
                access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                               "actions": parts[-1].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(opts.der).decode()]}
        claims = {"iss": opts.issuer, "sub": user or "", "aud": q.get("service", [""])[0],
                  "exp": now + opts.ttl, "nbf": now - 10, "iat": now,
                  "jti": binascii.hexlify(os.urandom(8)).decode(), "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", opts.key],
                             input=signing_input.encode(), capture_output=True, check=True).stdout
        tok = signing_input + "." + b64url(sig)
        body = json.dumps({"token": tok, "access_token": tok, "expires_in": opts.ttl,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--ttl", type=int, default=300)
    opts = ap.parse_args()
    opts.der = cert_der(opts.cert)
    srv = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    srv.opts = opts
    srv.serve_forever()


if __name__ == "__main__":
    main()
