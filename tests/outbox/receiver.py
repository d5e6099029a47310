#!/usr/bin/env python3
"""A sink for wrapup's outbox that verifies every request with the independent `standardwebhooks` library.

Prints one JSON line on stdout once listening: {"port": N}. Appends one JSON line per request to --log:
{"webhook_id", "verified", "answered", "type", "connection", "conversation", "participant", "outcome", "body"}.

What it answers is set with POST /control {"mode": "ok" | "down" | "gone"} (down: 503, gone: 410); the control
route is not signed and not logged. Used by the e2e tests (crates/cli/tests/e2e/outbox.rs).

    python3 tests/outbox/receiver.py --secret whsec_... --log received.jsonl [--port 0] [--mode ok]
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="ok", choices=["ok", "down", "gone"])
    args = parser.parse_args()

    webhook = Webhook(args.secret)
    state = {"mode": args.mode}
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.answer(413)
                return
            body = self.rfile.read(length)
            if self.path == "/control":
                with lock:
                    state["mode"] = json.loads(body)["mode"]
                self.answer(204)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                webhook.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            with lock:
                mode = state["mode"]
            status = 400 if not verified else {"ok": 204, "down": 503, "gone": 410}[mode]
            try:
                message = json.loads(body)
                data = message.get("data", {})
            except ValueError:
                message, data = {}, {}
            line = {
                "webhook_id": headers.get("webhook-id"),
                "verified": verified,
                "answered": status,
                "type": message.get("type"),
                "connection": data.get("connection"),
                "conversation": data.get("conversation"),
                "participant": data.get("participant"),
                "outcome": data.get("outcome"),
                "body": body.decode("utf-8", "replace"),
            }
            with lock:
                log.write(json.dumps(line) + "\n")
                log.flush()
            self.answer(status)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
