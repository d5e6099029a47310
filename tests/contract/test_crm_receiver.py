"""Contract test: the sandbox's CRM receiver against the Standard Webhooks reference library (`standardwebhooks`).

A message signed by the library is accepted, a tampered or wrongly keyed one is refused, and what the receiver
recorded (raw headers and body) verifies again with the library. Driven only through the receiver's sink URL and
its `/_control` surface, as a script would.

Run by run.sh, which starts `wrapup sandbox --crm` and exports the `crm` object of its first line as SANDBOX_CRM.
"""

import json
import os
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

CRM = json.loads(os.environ["SANDBOX_CRM"])
SINK = CRM["sinks"][0]
HOOK = CRM["hooks"][0]
CONTROL = CRM["control_url"] + "/_control"


def post(url, body, headers):
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    request.add_header("content-type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def signed(secret, body, msg_id=None):
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=timezone.utc)
    signature = Webhook(secret).sign(msg_id, now, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def records(name, kind="sinks"):
    with urllib.request.urlopen(f"{CONTROL}/{kind}/{name}/received", timeout=10) as response:
        return json.loads(response.read())


def test_a_message_signed_by_the_library_is_accepted_and_verifies_again_as_recorded():
    body = json.dumps({"type": "leg.finished", "data": {"outcome": "applied", "code": "Issue resolved"}})
    headers = signed(SINK["secret"], body)
    status, _ = post(SINK["url"], body, headers)
    assert status == 200
    record = next(r for r in records(SINK["name"]) if r["webhook_id"] == headers["webhook-id"])
    assert record["verified"] is True and record["status"] == 200
    recorded = {"webhook-id": record["webhook_id"], "webhook-timestamp": record["timestamp"],
                "webhook-signature": record["signature"]}
    assert Webhook(SINK["secret"]).verify(record["body"], recorded) == json.loads(body)


def test_a_tampered_body_or_another_key_is_refused_and_recorded_unverified():
    body = json.dumps({"n": 1})
    headers = signed(SINK["secret"], body)
    status, _ = post(SINK["url"], json.dumps({"n": 2}), headers)
    assert status == 401
    other = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    other_headers = signed(other, body)
    status, _ = post(SINK["url"], body, other_headers)
    assert status == 401
    by_id = {r["webhook_id"]: r for r in records(SINK["name"])}
    for msg_id in (headers["webhook-id"], other_headers["webhook-id"]):
        record = by_id[msg_id]
        assert record["verified"] is False and record["status"] == 401
        recorded = {"webhook-id": record["webhook_id"], "webhook-timestamp": record["timestamp"],
                    "webhook-signature": record["signature"]}
        with pytest.raises(WebhookVerificationError):
            Webhook(SINK["secret"]).verify(record["body"], recorded)


def test_the_hook_answers_what_the_control_surface_configured():
    conversation = str(uuid.uuid4())
    config = {"answers": {conversation: {"code": "Sale completed", "notes": "from the CRM"}}}
    request = urllib.request.Request(f"{CONTROL}/hooks/{HOOK['name']}", data=json.dumps(config).encode(),
                                     method="POST")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    body = json.dumps({"connection": "genesys", "conversation": conversation, "participant": str(uuid.uuid4())})
    status, answer = post(HOOK["url"], body, signed(HOOK["secret"], body))
    assert status == 200
    assert json.loads(answer) == {"code": "Sale completed", "notes": "from the CRM"}
    other = json.dumps({"connection": "genesys", "conversation": str(uuid.uuid4()), "participant": "p"})
    status, _ = post(HOOK["url"], other, signed(HOOK["secret"], other))
    assert status == 204
