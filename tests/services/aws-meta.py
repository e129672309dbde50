#!/usr/bin/env python3
"""Loopback stand-ins for the AWS credential endpoints a test cannot reach for real.

    aws-meta.py --port-file FILE --creds FILE [--log FILE]
                [--container-token TOKEN] [--web-token-file FILE] [--mode MODE]

It answers as the documented protocols do, with the credentials in --creds (a JSON file
with AccessKeyId, SecretAccessKey, SessionToken, Expiration: real RGW STS session keys
the test got with `aws sts assume-role`), re-read at each request:

  IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT; the real one is at 169.254.169.254):
    PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds -> a session token
    GET /latest/meta-data/iam/security-credentials/ with X-aws-ec2-metadata-token -> role
    GET /latest/meta-data/iam/security-credentials/ROLE -> {"Code": "Success", ...}
    A GET without the session token gets 401, as IMDSv2 answers.
  Container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI; ECS's agent is at
  169.254.170.2, EKS Pod Identity's at 169.254.170.23):
    GET /container-creds with "Authorization: TOKEN" -> {AccessKeyId, ..., Token, Expiration}
    a missing or wrong token gets 401.
  STS AssumeRoleWithWebIdentity (POST /sts, form-encoded, unsigned), for when RGW cannot
  check a token itself: the token must equal the contents of --web-token-file; the token
  "expired" gets 400 ExpiredTokenException, any other mismatch 400 InvalidIdentityToken.

--mode refuse makes every answer 403. Each request is one line of --log: "METHOD PATH".
"""
import argparse
import json
import secrets
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

ROLE = "snap-test-instance-role"


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_handler(opts, lock):
    imds_tokens = set()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def send(self, status, body, ctype="application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def creds(self):
            with open(opts.creds) as f:
                return json.load(f)

        def note(self):
            if opts.log:
                with lock, open(opts.log, "a") as f:
                    f.write("%s %s\n" % (self.command, self.path))

        def do_PUT(self):
            self.note()
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            if opts.mode == "refuse":
                return self.send(403, "", "text/plain")
            if self.path != "/latest/api/token" or not self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"):
                return self.send(400, "", "text/plain")
            tok = secrets.token_urlsafe(24)
            imds_tokens.add(tok)
            self.send(200, tok, "text/plain")

        def do_GET(self):
            self.note()
            if opts.mode == "refuse":
                return self.send(403, "", "text/plain")
            c = self.creds()
            p = self.path
            if p.startswith("/latest/meta-data/iam/security-credentials/"):
                if self.headers.get("X-aws-ec2-metadata-token") not in imds_tokens:
                    return self.send(401, "", "text/plain")
                rest = p[len("/latest/meta-data/iam/security-credentials/"):]
                if rest == "":
                    return self.send(200, ROLE, "text/plain")
                if rest != ROLE:
                    return self.send(404, "", "text/plain")
                return self.send(200, json.dumps({
                    "Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC",
                    "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                    "Token": c["SessionToken"], "Expiration": c["Expiration"]}))
            if p == "/container-creds":
                if not opts.container_token or \
                        self.headers.get("Authorization") != opts.container_token:
                    return self.send(401, json.dumps({"message": "unauthorized"}))
                return self.send(200, json.dumps({
                    "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                    "Token": c["SessionToken"], "Expiration": c["Expiration"]}))
            self.send(404, "", "text/plain")

        def do_POST(self):
            self.note()
            n = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(n).decode())
            if opts.mode == "refuse":
                return self.sts_error(403, "AccessDenied", "not allowed")
            if self.path != "/sts" or form.get("Action") != ["AssumeRoleWithWebIdentity"]:
                return self.sts_error(400, "InvalidAction", "unknown action")
            tok = (form.get("WebIdentityToken") or [""])[0]
            want = open(opts.web_token_file).read().strip() if opts.web_token_file else None
            if tok == "expired":
                return self.sts_error(400, "ExpiredTokenException", "Token expired: current date/time is later than exp")
            if tok != want or not form.get("RoleArn") or not form.get("RoleSessionName"):
                return self.sts_error(400, "InvalidIdentityToken", "the token is not valid")
            c = self.creds()
            self.send(200, (
                '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<AssumeRoleWithWebIdentityResult><Credentials>"
                "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
                "<SessionToken>%s</SessionToken><Expiration>%s</Expiration>"
                "</Credentials></AssumeRoleWithWebIdentityResult>"
                "</AssumeRoleWithWebIdentityResponse>") % (
                    c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"]),
                "text/xml")

        def sts_error(self, status, code, msg):
            self.send(status, (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                "<Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
                "</ErrorResponse>") % (code, msg), "text/xml")

    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--creds", required=True)
    ap.add_argument("--log")
    ap.add_argument("--container-token")
    ap.add_argument("--web-token-file")
    ap.add_argument("--mode", default="normal", choices=["normal", "refuse"])
    opts = ap.parse_args()
    srv = Server(("127.0.0.1", 0), make_handler(opts, threading.Lock()))
    with open(opts.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(opts.port_file + ".tmp", opts.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
