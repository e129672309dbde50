#!/usr/bin/env python3
"""A fault-injecting HTTP proxy on loopback, between snap and an S3 server.

    s3proxy.py --upstream 127.0.0.1:PORT --port-file FILE [--rate 0.3]
               [--faults 500,503,reset,cut,stall] [--seed N] [--stall 5] [--delay 0]
               [--log FILE]

It forwards requests unchanged (the Host header too, so SigV4 signatures stay valid) and,
for a random share of them (--rate, 0..1), injects the next fault of --faults in turn:

    500    answer 500 InternalError without forwarding
    503    answer 503 SlowDown without forwarding
    reset  close the connection without answering, without forwarding
    stall  hold the request without answering for --stall seconds, then close
    cut    forward the request (the server acts on it), then send the answer's headers and
           only half its body before closing: the client loses an answer to a request that
           took effect, which is what makes idempotent retries matter

--listing same|fresh makes every ListObjectsV2 answer say there is more: IsTruncated true
and a NextContinuationToken that is always the same (same) or new each time (fresh); the
pages asked for with such a token are answered by the proxy itself, empty and "more" again.

--methods limits faults to requests of those methods. The chosen port is written to
--port-file once the proxy listens. Each request, its Range header and what was done to it
is one line of --log: "GET /bucket/key range=bytes=0-99 cut", with "if-match=ETAG" before
the range when the request carries that header.
"""
import argparse
import http.client
import re
import random
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


class Proxy(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_handler(opts, rng, lock, log):
    faults = [f for f in opts.faults.split(",") if f]

    turn = [0]

    methods = set(opts.methods.split(",")) if opts.methods else None
    pages = [0]

    def next_token():
        with lock:
            pages[0] += 1
            return "loop" if opts.listing == "same" else "t%d" % pages[0]

    def endless(data):
        # Whatever the server listed, there is always more.
        tok = next_token()
        data = re.sub(rb"<IsTruncated>[^<]*</IsTruncated>", b"", data)
        data = re.sub(rb"<NextContinuationToken>[^<]*</NextContinuationToken>", b"", data)
        return data.replace(b"</ListBucketResult>", b"<IsTruncated>true</IsTruncated>"
                            b"<NextContinuationToken>" + tok.encode() + b"</NextContinuationToken>"
                            b"</ListBucketResult>")

    def pick(method):
        # Which requests fail is random; the faults take turns, so each kind shows up.
        if methods is not None and method not in methods:
            return None
        with lock:
            if rng.random() < opts.rate:
                turn[0] += 1
                return faults[(turn[0] - 1) % len(faults)]
        return None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def note(self, what):
            if log:
                with lock:
                    log.write("%s %s %s\n" % (self.command, self.path, what))
                    log.flush()

        def error(self, status, code):
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
                    "<Message>injected by the test proxy</Message></Error>" % code).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_body(self, status, data):
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            listing = opts.listing and self.command == "GET" and "list-type=2" in self.path
            if listing and "continuation-token=" in self.path:
                self.note("listing " + opts.listing)
                page = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
                        b'<KeyCount>0</KeyCount></ListBucketResult>')
                return self.send_body(200, endless(page))
            fault = pick(self.command)
            rng_hdr = self.headers.get("Range")
            cond = "if-match=%s " % self.headers.get("If-Match") if self.headers.get("If-Match") else ""
            self.note(cond + ("range=%s " % rng_hdr if rng_hdr else "") + (fault or "ok"))
            if opts.delay:
                time.sleep(opts.delay)
            if fault == "500":
                return self.error(500, "InternalError")
            if fault == "503":
                return self.error(503, "SlowDown")
            if fault == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if fault == "stall":
                time.sleep(opts.stall)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None

            host, port = opts.upstream.rsplit(":", 1)
            up = http.client.HTTPConnection(host, int(port), timeout=120)
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    up.putheader(k, v)
            if self.command in ("PUT", "POST") and "Content-Length" not in self.headers:
                up.putheader("Content-Length", "0")
            up.endheaders(body if body else None)
            resp = up.getresponse()
            data = resp.read()
            up.close()
            if listing and resp.status == 200 and "max-keys=1&" not in self.path + "&":
                data = endless(data)

            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            if self.command == "HEAD":
                length = resp.getheader("Content-Length")
                if length is not None:
                    self.send_header("Content-Length", length)
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return None
            if fault == "cut":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            self.wfile.write(data)
            return None

        def handle_quietly(self):
            try:
                self.handle_any()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away: nothing to answer

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_quietly

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--rate", type=float, default=0.3)
    ap.add_argument("--faults", default="500,503,reset,cut,stall")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stall", type=float, default=5.0)
    ap.add_argument("--methods", help="only requests of these methods get faults (GET,PUT)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds added to every request")
    ap.add_argument("--listing", choices=["same", "fresh"], help="listings that never end")
    ap.add_argument("--log")
    opts = ap.parse_args()

    log = open(opts.log, "a") if opts.log else None
    srv = Proxy(("127.0.0.1", 0), make_handler(opts, random.Random(opts.seed), threading.Lock(), log))
    with open(opts.port_file + ".tmp", "w") as f:
        f.write("%d\n" % srv.server_address[1])
    import os
    os.rename(opts.port_file + ".tmp", opts.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
