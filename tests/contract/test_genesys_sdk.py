"""Contract test: the official Genesys Cloud Python SDK against the wrapup sandbox.

The SDK (`purecloudplatformclientv2`, pinned in requirements.txt) is the contract: every response is read through
its own API classes and models, and the raw JSON is checked against the models' `attribute_map`/`swagger_types`
(no field the SDK does not know, JSON types as the models declare them, platform timestamps) and against the
enums (the SDK turns an unknown enum value into "outdated_sdk_version").

Run by run.sh, which starts `wrapup sandbox` and exports SANDBOX_BASE_URL, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
and SANDBOX_CONTROL_URL. The scenario runs top to bottom (pytest keeps file order); later tests use what earlier
module fixtures found.
"""

import atexit
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import time
import tempfile
import uuid
from datetime import datetime, timedelta, timezone

# The SDK's Configuration() watches ~/.genesyscloudpython/config (recursively watching the nearest existing parent
# directory when it is missing) and reads host/gateway settings from it. Give it an empty private home so the test
# neither depends on nor scans the real one. Must happen before the SDK is imported.
_HOME = tempfile.mkdtemp(prefix="gc-sdk-home-")
os.makedirs(os.path.join(_HOME, ".genesyscloudpython"))
os.environ["HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, True)

import pytest  # noqa: E402
import urllib3  # noqa: E402

import PureCloudPlatformClientV2 as gc  # noqa: E402
from PureCloudPlatformClientV2 import models  # noqa: E402
from PureCloudPlatformClientV2.default_http_client import DefaultHttpClient  # noqa: E402
from PureCloudPlatformClientV2.http_request_options import HttpRequestOptions  # noqa: E402
from PureCloudPlatformClientV2.rest import ApiException  # noqa: E402

BASE_URL = os.environ["SANDBOX_BASE_URL"]
CLIENT_ID = os.environ["SANDBOX_CLIENT_ID"]
CLIENT_SECRET = os.environ["SANDBOX_CLIENT_SECRET"]
CONTROL_URL = os.environ.get("SANDBOX_CONTROL_URL", BASE_URL + "/sandbox/v1")

# Platform timestamps on REST: yyyy-MM-ddTHH:mm:ss.SSSZ (platforms/genesys-cloud.md §11).
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
OUTDATED = "outdated_sdk_version"
CATALOG_WRITES = {}
QUEUE_PROMPTS = {"MANDATORY", "OPTIONAL", "MANDATORY_TIMEOUT", "MANDATORY_FORCED_TIMEOUT", "AGENT_REQUESTED"}


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def no_retry_http_client():
    """The SDK's own HTTP client, but without urllib3's automatic retry of 429/503 + Retry-After.

    The default client (rest.py) builds `urllib3.util.Retry()`, which sleeps Retry-After and retries 429s itself;
    a contract test must see the 429, and must not sleep a minute when the sandbox misbehaves.
    """
    hc = DefaultHttpClient(timeout=10)
    hc.rest_client.pool_manager = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(10))
    return hc


def new_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET):
    c = gc.api_client.ApiClient(host=BASE_URL)
    c.set_http_client(no_retry_http_client())
    c.get_client_credentials_token(client_id, client_secret)
    return c


def control(path):
    """GET on the sandbox's ground-truth API (not part of the platform; plain urllib3)."""
    r = urllib3.request("GET", CONTROL_URL + path, timeout=10, retries=False)
    assert r.status == 200, (path, r.status, r.data[:300])
    return json.loads(r.data)


def _walk_raw(v, typ, path, out):
    """Checks raw JSON `v` against an SDK swagger type string; appends problems to `out`."""
    if v is None:
        return
    if typ.startswith("list["):
        if not isinstance(v, list):
            out.append(f"{path}: expected an array ({typ}), got {type(v).__name__}")
            return
        for i, x in enumerate(v):
            _walk_raw(x, typ[5:-1], f"{path}[{i}]", out)
    elif typ.startswith("dict("):
        if not isinstance(v, dict):
            out.append(f"{path}: expected an object ({typ}), got {type(v).__name__}")
            return
        inner = typ[typ.index(",") + 1:-1].strip()
        for k, x in v.items():
            _walk_raw(x, inner, f"{path}.{k}", out)
    elif typ == "str":
        if not isinstance(v, str):
            out.append(f"{path}: expected a string, got {v!r}")
    elif typ == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            out.append(f"{path}: expected an integer, got {v!r}")
    elif typ == "float":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            out.append(f"{path}: expected a number, got {v!r}")
    elif typ == "bool":
        if not isinstance(v, bool):
            out.append(f"{path}: expected a boolean, got {v!r}")
    elif typ == "datetime":
        if not isinstance(v, str) or not DATETIME_RE.match(v):
            out.append(f"{path}: expected a yyyy-MM-ddTHH:mm:ss.SSSZ timestamp, got {v!r}")
    elif typ == "date":
        if not isinstance(v, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", v):
            out.append(f"{path}: expected a date, got {v!r}")
    elif typ == "object":
        pass
    else:
        klass = getattr(models, typ)
        if not isinstance(v, dict):
            out.append(f"{path}: expected an object ({typ}), got {type(v).__name__}")
            return
        inst = klass()
        by_json = {j: a for a, j in inst.attribute_map.items()}
        for k, x in v.items():
            if k not in by_json:
                out.append(f"{path}.{k}: not a field of {typ}")
            else:
                _walk_raw(x, inst.swagger_types[by_json[k]], f"{path}.{k}", out)


def raw_problems(raw, typ):
    out = []
    _walk_raw(raw, typ, "$", out)
    return out


def enum_problems(obj, path="$"):
    """Fields the SDK could not map to one of its enum values."""
    out = []
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            out += enum_problems(x, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, x in obj.items():
            out += enum_problems(x, f"{path}.{k}")
    elif hasattr(obj, "swagger_types"):
        for attr in obj.swagger_types:
            val = getattr(obj, attr)
            if isinstance(val, str) and val == OUTDATED:
                out.append(f"{path}.{obj.attribute_map[attr]}: value not in the SDK's enum")
            else:
                out += enum_problems(val, f"{path}.{obj.attribute_map[attr]}")
    return out


def headers_of(client):
    return {k.lower(): v for k, v in client.last_response.getheaders().items()}


def checked(client, typ, fn, *args, **kwargs):
    """Calls an SDK method; checks status, platform headers, raw JSON vs model, enums. Returns (model, raw)."""
    result = fn(*args, **kwargs)
    resp = client.last_response
    assert resp.status == 200, (fn.__name__, resp.status)
    h = headers_of(client)
    assert h.get("content-type", "").startswith("application/json"), (fn.__name__, h)
    assert h.get("inin-correlation-id"), (fn.__name__, "missing ININ-Correlation-Id")
    for name in ("inin-ratelimit-count", "inin-ratelimit-allowed", "inin-ratelimit-reset"):
        assert h.get(name, "").isdigit(), (fn.__name__, name, h.get(name))
    raw = json.loads(resp.data)
    problems = raw_problems(raw, typ) + enum_problems(result)
    assert not problems, f"{fn.__name__}: response does not match the SDK's {typ}:\n" + "\n".join(problems[:20])
    return result, raw


def error_of(exc, status):
    """Checks an ApiException carries the platform's ErrorBody; returns the parsed body."""
    assert exc.status == status, (exc.status, exc.body)
    body = json.loads(exc.body)
    problems = raw_problems(body, "ErrorBody")
    assert not problems, "error body does not match ErrorBody:\n" + "\n".join(problems)
    assert body["status"] == status
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    headers = {k.lower(): v for k, v in exc.headers.items()}
    assert body["contextId"] == headers.get("inin-correlation-id"), "contextId must equal ININ-Correlation-Id"
    return body


# ---------------------------------------------------------------------------------------------------------------
# Fixtures (the scenario's shared state)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    return new_client()


@pytest.fixture(scope="module")
def allowed():
    return control("/config")["rate_limit_per_minute"]


@pytest.fixture(scope="module")
def catalog(client):
    """The whole wrap-up code catalog, paged 5 at a time with the SDK."""
    routing = gc.RoutingApi(client)
    codes, pages, page = {}, [], 1
    while True:
        listing, raw = checked(client, "WrapupCodeEntityListing", routing.get_routing_wrapupcodes,
                               page_size=5, page_number=page)
        assert isinstance(listing, models.WrapupCodeEntityListing)
        pages.append(listing)
        for c in listing.entities:
            assert c.id not in codes, f"code {c.id} on two pages"
            codes[c.id] = c
        if not listing.next_uri:
            break
        page += 1
        assert page <= 50, "paging does not end"
    return {"codes": codes, "pages": pages}


@pytest.fixture(scope="module")
def queues(client):
    routing = gc.RoutingApi(client)
    listing, _ = checked(client, "QueueEntityListing", routing.get_routing_queues, page_size=100, page_number=1)
    out = {}
    for q in listing.entities:
        codes, _ = checked(client, "WrapupCodeEntityListing", routing.get_routing_queue_wrapupcodes, q.id,
                           page_size=100, page_number=1)
        out[q.id] = {"queue": q, "codes": {c.id: c for c in codes.entities}}
    return out


@pytest.fixture(scope="module")
def acw_scan(client):
    """In-progress ACW legs found with the analytics details query, plus ground truth read right after."""
    analytics = gc.AnalyticsApi(client)
    now = datetime.now(timezone.utc)
    interval = "{}/{}".format((now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                              (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    query = models.ConversationQuery()
    query.interval = interval
    query.order = "asc"
    query.order_by = "conversationStart"
    predicates = []
    for dim, op, val in (("purpose", "matches", "agent"), ("segmentType", "matches", "wrapup"),
                         ("wrapUpCode", "notExists", None)):
        p = models.SegmentDetailQueryPredicate()
        p.type = "dimension"
        p.dimension = dim
        p.operator = op
        if val is not None:
            p.value = val
        predicates.append(p)
    f = models.SegmentDetailQueryFilter()
    f.type = "and"
    f.predicates = predicates
    query.segment_filters = [f]
    found, total_hits, page = {}, None, 1
    while True:
        # One page holds every hit, so the set is one snapshot: with smaller pages, legs leaving the filter between
        # two page requests (agents coding) would shift later hits onto pages already read.
        paging = models.PagingSpec()
        paging.page_size = 100
        paging.page_number = page
        query.paging = paging
        resp, _ = checked(client, "AnalyticsConversationQueryResponse",
                          analytics.post_analytics_conversations_details_query, query)
        assert isinstance(resp.total_hits, int)
        total_hits = resp.total_hits if total_hits is None else total_hits
        if not resp.conversations:
            break
        for conv in resp.conversations:
            assert isinstance(conv.conversation_start, datetime)
            for p in conv.participants:
                for s in p.sessions or []:
                    for seg in s.segments or []:
                        if (p.purpose == "agent" and seg.segment_type == "wrapup" and seg.segment_end is None
                                and seg.wrap_up_code is None):
                            found[(conv.conversation_id, p.participant_id)] = {
                                "media": s.media_type, "session": s.session_id, "user": p.user_id,
                                "queue": seg.queue_id, "acw_start": seg.segment_start}
        page += 1
        assert page <= 30, "analytics paging does not end"
    truth = control("/legs")
    return {"found": found, "total_hits": total_hits, "queried_at": now, "truth": truth}


def pick_leg(acw_scan, media, prompts=("mandatory",)):
    """An ACW leg found by analytics, of this media, on a queue without ACW timeout, that nobody coded yet."""
    truth = {(t["conversationId"], t["participantId"]): t for t in control("/legs")}
    for key in sorted(acw_scan["found"]):
        t = truth.get(key)
        if t and t["mediaType"] == media and t["state"] == "acw" and t["wrapupPrompt"] in prompts \
                and t["codedBy"] == "none" and t["apiWrites"] == 0:
            return key, t
    pytest.fail(f"no {media} leg in ACW on a {prompts} queue among the analytics results")


class WebSocket:
    """A minimal RFC 6455 client (text frames, unfragmented), enough to read the notification channel.

    The Python SDK has no notification client; the frames' bodies are still checked against the SDK's models.
    """

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url, timeout=5.0):
        u = urllib3.util.parse_url(url)
        assert u.scheme == "ws", url
        self.sock = socket.create_connection((u.host, u.port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.request_uri} HTTP/1.1\r\nHost: {u.host}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        status = self.file.readline().decode()
        assert " 101 " in status, status
        headers = {}
        while True:
            line = self.file.readline().decode().strip()
            if not line:
                break
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        """The next text frame as JSON; None when the server closes."""
        while True:
            b0, b1 = self.file.read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.file.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.file.read(8))[0]
            payload = self.file.read(n)
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                return None
            # pings/pongs/binary: ignore (the server never sends binary frames)

    def close(self):
        try:
            self.sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------------------------------


def test_login_with_client_credentials():
    c = gc.api_client.ApiClient(host=BASE_URL)
    # No `api.` in the sandbox's host: the SDK's login host is the API host itself.
    assert c.get_conf_url("login", c.host) == BASE_URL
    assert c.get_conf_url("api", c.host) == BASE_URL
    c.set_http_client(no_retry_http_client())
    assert c.get_client_credentials_token(CLIENT_ID, CLIENT_SECRET) is c
    assert isinstance(c.access_token, str) and len(c.access_token) >= 16

    # The token response itself (the SDK keeps only access_token).
    import base64
    auth = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    resp = c.get_http_client().request(HttpRequestOptions(
        url=c.get_conf_url("login", c.host) + "/oauth/token", method="POST",
        headers={"Authorization": "Basic " + auth, "Content-Type": "application/x-www-form-urlencoded"},
        post_params={"grant_type": "client_credentials"}))
    body = json.loads(resp.data)
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert isinstance(body["access_token"], str) and body["access_token"] != c.access_token

    # Wrong secret: the login host's 400 OAuth error.
    bad = gc.api_client.ApiClient(host=BASE_URL)
    bad.set_http_client(no_retry_http_client())
    with pytest.raises(ApiException) as e:
        bad.get_client_credentials_token(CLIENT_ID, CLIENT_SECRET + "x")
    assert e.value.status == 400
    assert json.loads(e.value.body)["error"] == "invalid_client"


def test_gateway_configuration_points_login_and_api_at_the_sandbox():
    """The other way to aim the SDK at the sandbox: keep a real region host and set a gateway."""
    u = urllib3.util.parse_url(BASE_URL)
    c = gc.api_client.ApiClient(host="https://api.mypurecloud.ie")
    c.set_gateway(u.host, u.scheme, u.port, "", "")
    assert c.get_conf_url("login", c.host) == BASE_URL
    c.set_http_client(no_retry_http_client())
    c.get_client_credentials_token(CLIENT_ID, CLIENT_SECRET)
    listing, _ = checked(c, "WrapupCodeEntityListing", gc.RoutingApi(c).get_routing_wrapupcodes, page_size=1)
    assert listing.total >= 1


def test_unauthenticated_requests_get_401(client):
    c = gc.api_client.ApiClient(host=BASE_URL)
    c.set_http_client(no_retry_http_client())
    c.access_token = "not-a-token"
    with pytest.raises(ApiException) as e:
        gc.RoutingApi(c).get_routing_wrapupcodes()
    assert error_of(e.value, 401)["code"] == "bad.credentials"


def test_wrapup_code_catalog_pages(catalog, client):
    pages, codes = catalog["pages"], catalog["codes"]
    first = pages[0]
    assert first.page_size == 5 and first.page_number == 1
    assert first.total == len(codes), "total must count the whole catalog"
    assert first.page_count == -(-first.total // 5) == len(pages)
    assert len(codes) >= 10
    for n, p in enumerate(pages, start=1):
        assert p.page_number == n and p.page_size == 5 and p.total == first.total
        assert len(p.entities) == (5 if n < len(pages) else first.total - 5 * (len(pages) - 1))
        assert p.self_uri and p.first_uri and p.last_uri
        assert (p.previous_uri is None) == (n == 1)
        assert (p.next_uri is None) == (n == len(pages))
    names = [c.name for p in pages for c in p.entities]
    assert names == sorted(names, key=str.lower), "default order is by name"
    for c in codes.values():
        assert isinstance(c, models.WrapupCode)
        assert isinstance(c.id, str) and isinstance(c.name, str) and c.name
        assert isinstance(c.date_created, datetime) and c.date_created.tzinfo is not None
        assert c.division is not None and isinstance(c.division.id, str)
        assert c.self_uri == f"/api/v2/routing/wrapupcodes/{c.id}"
    one = next(iter(codes.values()))
    got, _ = checked(client, "WrapupCode", gc.RoutingApi(client).get_routing_wrapupcode, one.id)
    assert got.id == one.id and got.name == one.name
    # Filters and order: exact name (case-insensitive), trailing-* prefix, ids, descending.
    routing = gc.RoutingApi(client)
    exact, _ = checked(client, "WrapupCodeEntityListing", routing.get_routing_wrapupcodes,
                       name=one.name.upper(), page_size=25)
    assert [c.id for c in exact.entities] == [one.id]
    prefix = one.name[:3]
    pre, _ = checked(client, "WrapupCodeEntityListing", routing.get_routing_wrapupcodes, name=prefix + "*",
                     page_size=100)
    assert {c.id for c in pre.entities} == {c.id for c in codes.values() if c.name.lower().startswith(prefix.lower())}
    desc, _ = checked(client, "WrapupCodeEntityListing", routing.get_routing_wrapupcodes, sort_order="descending",
                      page_size=100)
    assert [c.name for c in desc.entities] == sorted(names, key=str.lower, reverse=True)
    with pytest.raises(ApiException) as e:
        routing.get_routing_wrapupcodes(page_size=0)
    error_of(e.value, 400)
    # A page past the end is empty, not an error.
    past, _ = checked(client, "WrapupCodeEntityListing", gc.RoutingApi(client).get_routing_wrapupcodes,
                      page_size=5, page_number=len(pages) + 1)
    assert past.entities == [] and past.total == first.total


def test_wrapup_codes_filtered_by_ids(client, catalog):
    """The SDK sends list query parameters comma-separated (ApiClient.to_path_value): `id=a,b`."""
    two = sorted(catalog["codes"])[:2]
    by_id, _ = checked(client, "WrapupCodeEntityListing", gc.RoutingApi(client).get_routing_wrapupcodes, id=two,
                       page_size=100)
    assert sorted(c.id for c in by_id.entities) == two


def test_queues_and_their_codes(queues, catalog):
    assert len(queues) >= 1
    prompts = set()
    for qid, q in queues.items():
        queue = q["queue"]
        assert isinstance(queue, models.Queue) and queue.id == qid and queue.name
        assert queue.acw_settings is not None
        prompt = queue.acw_settings.wrapup_prompt
        assert prompt in QUEUE_PROMPTS, prompt
        prompts.add(prompt)
        if prompt in ("MANDATORY_TIMEOUT", "MANDATORY_FORCED_TIMEOUT"):
            assert isinstance(queue.acw_settings.timeout_ms, int) and queue.acw_settings.timeout_ms > 0
        assert q["codes"], f"queue {queue.name} has no codes"
        assert set(q["codes"]) <= set(catalog["codes"]), "queue codes must come from the catalog"
    assert prompts == QUEUE_PROMPTS, "the default center has one queue per ACW mode"


def test_queues_filtered_by_ids(client, queues):
    two = sorted(queues)[:2]
    listing, _ = checked(client, "QueueEntityListing", gc.RoutingApi(client).get_routing_queues, id=two,
                         page_size=100)
    assert sorted(q.id for q in listing.entities) == two and listing.total == 2


def test_analytics_finds_the_legs_in_acw(acw_scan, queues):
    found, truth = acw_scan["found"], acw_scan["truth"]
    assert len(found) >= 10, f"only {len(found)} ACW legs found (preload 50)"
    assert acw_scan["total_hits"] >= len({cid for cid, _ in found})
    assert acw_scan["total_hits"] <= 100, "more hits than one page: the scan is no longer one snapshot"
    by_key = {(t["conversationId"], t["participantId"]): t for t in truth}
    since = acw_scan["queried_at"] - timedelta(seconds=2)
    for key, leg in found.items():
        t = by_key.get(key)
        assert t is not None, f"analytics reports ACW for {key}, which is no agent leg"
        assert t["acwStartedAt"] is not None
        assert leg["queue"] == t["queueId"] and leg["user"] == t["userId"] and leg["session"] == t["communicationId"]
        assert leg["queue"] in queues
        if t["state"] != "acw":
            # Closed after the query (an agent coded, a timeout): allowed, but only after the query.
            closed = datetime.fromisoformat(t["windowClosedAt"].replace("Z", "+00:00"))
            assert closed >= since, f"{key} was closed at {closed}, before the query, yet reported in ACW"
    for t in truth:
        key = (t["conversationId"], t["participantId"])
        if t["state"] == "acw" and t["finalCode"] is None:
            started = datetime.fromisoformat(t["acwStartedAt"].replace("Z", "+00:00"))
            if started < since:
                assert key in found, f"leg {key} in ACW since {started} not found by the analytics query"


@pytest.fixture(scope="module")
def call_leg(acw_scan):
    return pick_leg(acw_scan, "calls")


def test_read_conversation_of_an_acw_call(client, call_leg, queues):
    (cid, pid), t = call_leg
    conv, raw = checked(client, "Conversation", gc.ConversationsApi(client).get_conversation, cid)
    assert isinstance(conv, models.Conversation) and conv.id == cid
    assert conv.self_uri == f"/api/v2/conversations/{cid}"
    assert isinstance(conv.start_time, datetime)
    agent = next(p for p in conv.participants if p.id == pid)
    assert isinstance(agent, models.Participant)
    assert agent.purpose == "agent"
    assert agent.user_id == t["userId"] and agent.queue_id == t["queueId"]
    assert agent.queue_name == queues[agent.queue_id]["queue"].name
    assert agent.wrapup_required is True
    assert agent.wrapup_prompt == "mandatory"
    assert isinstance(agent.start_acw_time, datetime)
    assert isinstance(agent.end_time, datetime)
    assert agent.calls and len(agent.calls) == 1
    call = agent.calls[0]
    assert isinstance(call, models.Call) and call.id == t["communicationId"]
    assert call.state in ("disconnected", "terminated")
    assert call.after_call_work is not None and isinstance(call.after_call_work.start_time, datetime)
    # The simulated agent may code this leg at any moment; judge the read by the truth read right after it.
    after = next(x for x in control("/legs") if x["conversationId"] == cid and x["participantId"] == pid)
    if after["state"] == "acw":
        assert agent.end_acw_time is None
        assert agent.wrapup is None or agent.wrapup.provisional
        assert call.after_call_work.state == "pending"
    else:
        assert after["codedBy"] == "agent", after
        assert call.after_call_work.state in ("pending", "complete")
        assert (agent.end_acw_time is None) == (call.after_call_work.state == "pending")
    assert any(p.purpose == "customer" for p in conv.participants)

    # The media-specific view flattens the call onto the participant and uses user{}/queue{} objects.
    call_conv, _ = checked(client, "CallConversation", gc.ConversationsApi(client).get_conversations_call, cid)
    media_agent = next(p for p in call_conv.participants if p.id == pid)
    assert isinstance(media_agent, models.CallMediaParticipant)
    assert media_agent.user.id == t["userId"] and media_agent.queue.id == t["queueId"]
    assert media_agent.state in ("disconnected", "terminated") and media_agent.wrapup_required is True

    # An agent in ACW stays INTERACTING.
    status, _ = checked(client, "RoutingStatus", gc.UsersApi(client).get_user_routingstatus, t["userId"])
    assert status.user_id == t["userId"] and status.status == "INTERACTING"
    assert isinstance(status.start_time, datetime)


def test_participant_allowed_codes_are_the_queue_codes(client, call_leg, queues):
    (cid, pid), t = call_leg
    api = gc.ConversationsApi(client)
    codes, raw = checked(client, "list[WrapupCode]", api.get_conversation_participant_wrapupcodes, cid, pid)
    assert isinstance(raw, list), "the participant's codes are a bare JSON array"
    assert all(isinstance(c, models.WrapupCode) for c in codes)
    assert {c.id for c in codes} == set(queues[t["queueId"]]["codes"])


def test_apply_wrapup_to_a_call_and_read_it_back(client, call_leg, queues):
    (cid, pid), t = call_leg
    api = gc.ConversationsApi(client)
    codes = sorted(queues[t["queueId"]]["codes"])
    provisional_code, final_code = codes[0], codes[1]

    # Provisional save: readable with provisional=true only; the window stays open.
    body = models.WrapupInput()
    body.code = provisional_code
    body.provisional = True
    assert api.post_conversations_call_participant_communication_wrapup(
        cid, pid, t["communicationId"], body=body) is None
    assert client.last_response.status == 202 and client.last_response.data == ""
    got, _ = checked(client, "AssignedWrapupCode", api.get_conversation_participant_wrapup, cid, pid,
                     provisional=True)
    assert got.code == provisional_code
    hidden, raw = checked(client, "AssignedWrapupCode", api.get_conversation_participant_wrapup, cid, pid)
    assert hidden.code is None, "a provisional code is not the participant's wrap-up"

    # Final code.
    body = models.WrapupInput()
    body.code = final_code
    body.notes = "contract test"
    body.tags = ["sdk"]
    body.duration_seconds = 12
    api.post_conversations_call_participant_communication_wrapup(cid, pid, t["communicationId"], body=body)
    assert client.last_response.status == 202 and client.last_response.data == ""
    h = headers_of(client)
    assert h.get("inin-correlation-id") and h.get("inin-ratelimit-count", "").isdigit()

    got, _ = checked(client, "AssignedWrapupCode", api.get_conversation_participant_wrapup, cid, pid,
                     provisional=True)
    assert got.code == final_code and got.notes == "contract test" and got.tags == ["sdk"]
    assert got.duration_seconds == 12
    assert isinstance(got.end_time, datetime)
    got2, _ = checked(client, "AssignedWrapupCode", api.get_conversation_participant_wrapup, cid, pid)
    assert got2.code == final_code
    # The same through the media-specific read paths.
    media, _ = checked(client, "AssignedWrapupCode", api.get_conversations_call_participant_wrapup, cid, pid)
    assert media.code == final_code and media.duration_seconds == 12
    comm, _ = checked(client, "AssignedWrapupCode", api.get_conversations_call_participant_communication_wrapup,
                      cid, pid, t["communicationId"])
    assert comm.code == final_code and comm.notes == "contract test"
    codes_media, raw = checked(client, "list[WrapupCode]", api.get_conversations_call_participant_wrapupcodes,
                               cid, pid)
    assert isinstance(raw, list) and {c.id for c in codes_media} == set(codes)

    conv, _ = checked(client, "Conversation", api.get_conversation, cid)
    agent = next(p for p in conv.participants if p.id == pid)
    assert agent.wrapup is not None and agent.wrapup.code == final_code and not agent.wrapup.provisional
    assert isinstance(agent.end_acw_time, datetime)
    assert agent.calls[0].after_call_work.state == "complete"

    leg = next(x for x in control("/legs") if x["conversationId"] == cid and x["participantId"] == pid)
    assert leg["finalCode"] == final_code and leg["codedBy"] == "api" and leg["state"] == "done"


def test_apply_wrapup_with_patch_participant(client, acw_scan, queues):
    (cid, pid), t = pick_leg(acw_scan, "messages", prompts=("mandatory", "agentRequested"))
    api = gc.ConversationsApi(client)
    code = sorted(queues[t["queueId"]]["codes"])[-1]
    wrapup = models.WrapupInput()
    wrapup.code = code
    wrapup.notes = "patched"
    req = models.MediaParticipantRequest()
    req.wrapup = wrapup
    assert api.patch_conversation_participant(cid, pid, req) is None
    assert client.last_response.status == 202
    got, _ = checked(client, "AssignedWrapupCode", api.get_conversation_participant_wrapup, cid, pid)
    assert got.code == code and got.notes == "patched"
    conv, _ = checked(client, "Conversation", api.get_conversation, cid)
    agent = next(p for p in conv.participants if p.id == pid)
    assert agent.wrapup.code == code and isinstance(agent.end_acw_time, datetime)
    assert agent.messages and agent.messages[0].after_call_work.state == "complete"


def test_apply_wrapup_with_media_patch_on_an_email(client, acw_scan, queues):
    (cid, pid), t = pick_leg(acw_scan, "emails")
    api = gc.ConversationsApi(client)
    code = sorted(queues[t["queueId"]]["codes"])[0]
    wrapup = models.WrapupInput()
    wrapup.code = code
    req = models.MediaParticipantRequest()
    req.wrapup = wrapup
    assert api.patch_conversations_email_participant(cid, pid, req) is None
    assert client.last_response.status == 202
    got, _ = checked(client, "AssignedWrapupCode", api.get_conversations_email_participant_wrapup, cid, pid)
    assert got.code == code
    leg = next(x for x in control("/legs") if x["conversationId"] == cid and x["participantId"] == pid)
    assert leg["finalCode"] == code and leg["codedBy"] == "api"


MEDIA_VIEWS = {
    # media path: (SDK method, response model, media participant model, generic communication attribute)
    "calls": ("get_conversations_call", "CallConversation", "CallMediaParticipant", "calls"),
    "callbacks": ("get_conversations_callback", "CallbackConversation", "CallbackMediaParticipant", "callbacks"),
    "emails": ("get_conversations_email", "EmailConversation", "EmailMediaParticipant", "emails"),
    "messages": ("get_conversations_message", "MessageConversation", "MessageMediaParticipant", "messages"),
}


@pytest.mark.parametrize("media", sorted(MEDIA_VIEWS))
def test_every_media_matches_the_sdk_models(client, acw_scan, media):
    """One ACW leg per media type, read through the generic and the media-specific view."""
    method, model, participant_model, attr = MEDIA_VIEWS[media]
    truth = {(t["conversationId"], t["participantId"]): t for t in acw_scan["truth"]}
    legs = [k for k in sorted(acw_scan["found"]) if truth.get(k, {}).get("mediaType") == media]
    assert legs, f"no {media} leg in ACW"
    cid, pid = legs[0]
    api = gc.ConversationsApi(client)
    conv, _ = checked(client, "Conversation", api.get_conversation, cid)
    agent = next(p for p in conv.participants if p.id == pid)
    comms = getattr(agent, attr)
    assert comms and comms[0].id == truth[(cid, pid)]["communicationId"]
    for other in MEDIA_VIEWS.values():
        if other[3] != attr:
            assert not getattr(agent, other[3]), f"a {media} participant must not carry {other[3]}[]"
    view, _ = checked(client, model, getattr(api, method), cid)
    assert type(view).__name__ == model and view.id == cid
    magent = next(p for p in view.participants if p.id == pid)
    assert type(magent).__name__ == participant_model
    assert magent.purpose == "agent" and magent.wrapup_required is True


@pytest.fixture(scope="module")
def notification_run(client, acw_scan, queues):
    """A channel subscribed to one agent's topics, a wrap-up applied to that agent's leg, and the frames read."""
    api = gc.NotificationsApi(client)
    channel, _ = checked(client, "Channel", api.post_notifications_channels)
    (cid, pid), t = pick_leg(acw_scan, "calls")
    user_topic = f"v2.users.{t['userId']}.conversations"
    acw_topic = f"v2.detail.events.conversation.{cid}.acw"
    wrapup_topic = f"v2.detail.events.conversation.{cid}.wrapup"
    queue_topic = f"v2.routing.queues.{t['queueId']}.conversations"
    queue_calls_topic = queue_topic + ".calls"
    topics = []
    for tid in (user_topic, acw_topic, wrapup_topic, queue_topic, queue_calls_topic, "v2.users.nobody.presence"):
        ct = models.ChannelTopic()
        ct.id = tid
        topics.append(ct)
    listing, _ = checked(client, "ChannelTopicEntityListing", api.post_notifications_channel_subscriptions,
                         channel.id, topics)
    ws = WebSocket(channel.connect_uri)
    frames = []
    try:
        ws.send_text(json.dumps({"message": "ping"}))
        code = sorted(queues[t["queueId"]]["codes"])[0]
        body = models.WrapupInput()
        body.code = code
        body.notes = "via notifications"
        gc.ConversationsApi(client).post_conversations_call_participant_communication_wrapup(
            cid, pid, t["communicationId"], body=body)
        deadline = time.monotonic() + 10
        want = {"pong", acw_topic, wrapup_topic, user_topic, queue_topic, queue_calls_topic}
        while want and time.monotonic() < deadline:
            f = ws.recv()
            if f is None:
                break
            frames.append(f)
            if f.get("topicName") == "channel.metadata":
                want.discard(f.get("eventBody", {}).get("message"))
            elif f.get("eventBody", {}).get("id") == cid or f.get("eventBody", {}).get("conversationId") == cid:
                want.discard(f.get("topicName"))
    finally:
        ws.close()
    return {"channel": channel, "listing": listing, "frames": frames, "leg": (cid, pid, t, code),
            "topics": (user_topic, acw_topic, wrapup_topic), "queue_topics": (queue_topic, queue_calls_topic)}


def test_notification_channel_rest(client, notification_run):
    api = gc.NotificationsApi(client)
    ch = notification_run["channel"]
    assert isinstance(ch, models.Channel) and ch.id
    assert ch.connect_uri.startswith("ws://") and ch.connect_uri.endswith(f"/channels/{ch.id}")
    assert isinstance(ch.expires, datetime)
    states = {e.id: e.state for e in notification_run["listing"].entities}
    user_topic, acw_topic, wrapup_topic = notification_run["topics"]
    assert states[user_topic] == states[acw_topic] == states[wrapup_topic] == "Permitted"
    assert states["v2.users.nobody.presence"] == "Rejected"
    channels, _ = checked(client, "ChannelEntityListing", api.get_notifications_channels)
    assert ch.id in {c.id for c in channels.entities}
    subs, _ = checked(client, "ChannelTopicEntityListing", api.get_notifications_channel_subscriptions, ch.id)
    assert {user_topic, acw_topic, wrapup_topic} <= {e.id for e in subs.entities}
    api.head_notifications_channel(ch.id)
    assert client.last_response.status == 200
    with pytest.raises(ApiException) as e:
        api.head_notifications_channel("streaming-0-nope")
    assert e.value.status == 404


def test_notification_detail_events(notification_run):
    cid, pid, t, code = notification_run["leg"]
    _, acw_topic, wrapup_topic = notification_run["topics"]
    frames = {f.get("topicName"): f for f in notification_run["frames"]}
    pong = [f for f in notification_run["frames"] if f.get("topicName") == "channel.metadata"]
    assert pong and pong[0]["eventBody"]["message"] == "pong"
    for topic, model in ((acw_topic, "AcwDetailEventTopicAfterCallWorkEvent"),
                         (wrapup_topic, "WrapupDetailEventTopicWrapupEvent")):
        f = frames.get(topic)
        assert f is not None, f"no frame on {topic}; got {sorted(frames)}"
        assert f["version"] == "2" and isinstance(f["metadata"]["CorrelationId"], str)
        body = f["eventBody"]
        problems = raw_problems(body, model)
        problems += enum_problems(gc.api_client.ApiClient()._ApiClient__deserialize(body, model))
        assert not problems, f"{topic} does not match {model}:\n" + "\n".join(problems)
        assert isinstance(body["eventTime"], int)
        assert body["conversationId"] == cid and body["participantId"] == pid
        assert body["wrapupCode"] == code and body["wrapupNotes"] == "via notifications"
        assert isinstance(body["wrapupDurationMs"], int) and body["wrapupDurationMs"] >= 0
    assert frames[acw_topic]["eventBody"]["userId"] == t["userId"]


@pytest.mark.parametrize("which, model", [
    ("user", "ConversationEventTopicConversation"),
    ("queue", "QueueConversationEventTopicConversation"),
    ("queue.calls", "QueueConversationCallEventTopicCallConversation"),
])
def test_notification_conversation_topics(notification_run, which, model):
    cid, pid, t, code = notification_run["leg"]
    topic = {"user": notification_run["topics"][0], "queue": notification_run["queue_topics"][0],
             "queue.calls": notification_run["queue_topics"][1]}[which]
    snaps = [f for f in notification_run["frames"] if f.get("topicName") == topic and f["eventBody"].get("id") == cid]
    assert snaps, f"no frame of this conversation on {topic}"
    body = snaps[-1]["eventBody"]
    problems = raw_problems(body, model)
    problems += enum_problems(gc.api_client.ApiClient()._ApiClient__deserialize(body, model))
    assert not problems, f"{topic} frame does not match {model}:\n" + "\n".join(problems[:30])
    agent = next(p for p in body["participants"] if p["id"] == pid)
    assert agent["wrapup"]["code"] == code and agent["endAcwTime"]
    if which == "queue.calls":
        assert agent["user"]["id"] == t["userId"] and agent["queue"]["id"] == t["queueId"]
        assert agent["state"] in ("disconnected", "terminated")
    else:
        assert agent["userId"] == t["userId"] and agent["queueId"] == t["queueId"]
        assert agent["calls"][0]["afterCallWork"]["state"] == "complete"


def test_errors_are_platform_error_bodies(client, call_leg):
    api = gc.ConversationsApi(client)
    with pytest.raises(ApiException) as e:
        api.get_conversation(str(uuid.uuid4()))
    assert error_of(e.value, 404)["code"] == "not.found"

    (cid, pid), t = call_leg
    body = models.WrapupInput()
    body.code = str(uuid.uuid4())
    with pytest.raises(ApiException) as e:
        api.post_conversations_call_participant_communication_wrapup(cid, pid, t["communicationId"], body=body)
    error_of(e.value, 400)

    # No body (the SDK then sends JSON `null`): an absent WrapupInput, judged as such — not "malformed".
    with pytest.raises(ApiException) as e:
        api.post_conversations_call_participant_communication_wrapup(cid, pid, t["communicationId"])
    assert "malformed" not in error_of(e.value, 400)["message"]

    # Wrong media segment for the conversation: not found.
    with pytest.raises(ApiException) as e:
        api.get_conversations_email(cid)
    error_of(e.value, 404)


def test_catalog_writes(client, queues):
    """Create, rename, assign to a queue, unassign and delete a code; the catalog is as before afterwards."""
    routing = gc.RoutingApi(client)
    before = routing.get_routing_wrapupcodes(page_size=100).total
    req = models.WrapupCodeRequest()
    req.name = f"Contract test {uuid.uuid4().hex[:8]}"
    req.description = "made by the SDK contract test"
    code, _ = checked(client, "WrapupCode", routing.post_routing_wrapupcodes, req)
    assert code.id and code.name == req.name and code.description == req.description
    CATALOG_WRITES["code"] = code.id
    assert isinstance(code.date_created, datetime)

    with pytest.raises(ApiException) as e:
        routing.post_routing_wrapupcodes(req)
    error_of(e.value, 400)  # duplicate name

    req.name += " renamed"
    renamed, _ = checked(client, "WrapupCode", routing.put_routing_wrapupcode, code.id, req)
    assert renamed.id == code.id and renamed.name == req.name

    qid = sorted(queues)[0]
    CATALOG_WRITES["queue"] = qid
    queue, _ = checked(client, "Queue", routing.get_routing_queue, qid)
    assert queue.id == qid and queue.acw_settings.wrapup_prompt in QUEUE_PROMPTS
    ref = models.WrapUpCodeReference()
    ref.id = code.id
    added, raw = checked(client, "list[WrapupCode]", routing.post_routing_queue_wrapupcodes, qid, [ref])
    assert isinstance(raw, list) and [c.id for c in added] == [code.id]
    listed = routing.get_routing_queue_wrapupcodes(qid, page_size=100)
    assert code.id in {c.id for c in listed.entities}
    routing.delete_routing_queue_wrapupcode(qid, code.id)
    assert client.last_response.status in (200, 204)
    listed = routing.get_routing_queue_wrapupcodes(qid, page_size=100)
    assert code.id not in {c.id for c in listed.entities}

    routing.delete_routing_wrapupcode(code.id)
    assert client.last_response.status in (200, 204)
    with pytest.raises(ApiException) as e:
        routing.get_routing_wrapupcode(code.id)
    assert error_of(e.value, 404)["code"] == "not.found"
    assert routing.get_routing_wrapupcodes(page_size=100).total == before
    CATALOG_WRITES["done"] = True


def iso_interval(hours):
    now = datetime.now(timezone.utc)
    return "{}/{}".format((now - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                          (now + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))


def test_audit_trail_of_the_catalog_writes(client):
    assert CATALOG_WRITES.get("done"), "test_catalog_writes must run first"
    code_id, qid = CATALOG_WRITES["code"], CATALOG_WRITES["queue"]
    audit = gc.AuditApi(client)
    for method in (audit.get_audits_query_servicemapping, audit.get_audits_query_realtime_servicemapping):
        mapping, _ = checked(client, "AuditQueryServiceMapping", method)
        routing = next(sv for sv in mapping.services if sv.name == "Routing")
        assert "WrapupCode" in {e.name for e in routing.entities}

    def query(entity_type, entity_id):
        req = models.AuditRealtimeQueryRequest()
        req.interval = iso_interval(1)
        req.service_name = "Routing"
        filters = []
        for prop, value in (("EntityType", entity_type), ("EntityId", entity_id)):
            f = models.AuditQueryFilter()
            f.pcProperty = prop  # the SDK renames `property` (a Python builtin)
            f.value = value
            filters.append(f)
        req.filters = filters
        sort = models.AuditQuerySort()
        sort.name = "Timestamp"
        sort.sort_order = "ascending"
        req.sort = [sort]
        req.page_size = 25
        req.page_number = 1
        resp, _ = checked(client, "AuditRealtimeQueryResultsResponse", audit.post_audits_query_realtime, req)
        return resp

    resp = query("WrapupCode", code_id)
    assert [m.action for m in resp.entities] == ["Create", "Update", "Delete"]
    assert resp.total == 3
    for m in resp.entities:
        assert m.entity.id == code_id and m.entity_type == "WrapupCode" and m.service_name == "Routing"
        assert isinstance(m.event_date, datetime) and m.status == "SUCCESS"
        assert m.client is not None and m.client.id == CLIENT_ID
    renamed = next(pc for pc in resp.entities[1].property_changes if pc.pcProperty == "name")
    assert renamed.new_values[0].endswith(" renamed")
    resp = query("Queue", qid)
    assert [m.action for m in resp.entities][-2:] == ["WrapupCodeAdd", "WrapupCodeRemove"]
    assert resp.entities[-2].entity_changes[0].entity_id == code_id


def test_conversation_aggregates(client):
    """Aggregates grouped by queue and code, against the legs' ground truth."""
    # Truth first: legs closing between the two reads then only add to the query's counts.
    closed = {}
    for t in control("/legs"):
        if t["mediaType"] == "calls" and t["windowClosedAt"] and t["finalCode"]:
            key = (t["queueId"], t["finalCode"])
            closed[key] = closed.get(key, 0) + 1
    q = models.ConversationAggregationQuery()
    q.interval = iso_interval(24)
    q.group_by = ["queueId", "wrapUpCode"]
    q.metrics = ["nConnected", "tAcw", "tHandle"]
    pred = models.ConversationAggregateQueryPredicate()
    pred.dimension = "mediaType"
    pred.value = "voice"
    f = models.ConversationAggregateQueryFilter()
    f.type = "and"
    f.predicates = [pred]
    q.filter = f
    resp, _ = checked(client, "ConversationAggregateQueryResponse",
                      gc.AnalyticsApi(client).post_analytics_conversations_aggregates_query, q)
    assert resp.results, "no aggregate results"
    seen = {}
    for r in resp.results:
        assert set(r.group) <= {"queueId", "wrapUpCode"}
        for d in r.data:
            assert "/" in d.interval
            for m in d.metrics:
                assert m.metric in ("nConnected", "tAcw", "tHandle")
                assert isinstance(m.stats.count, int) and m.stats.count >= 1
                if m.metric == "tAcw" and "wrapUpCode" in r.group:
                    key = (r.group["queueId"], r.group["wrapUpCode"])
                    seen[key] = seen.get(key, 0) + m.stats.count
                    assert isinstance(m.stats.sum, (int, float)) and m.stats.sum >= 0
    # Every coded voice leg whose window closed (the ones this test coded included) is counted in its group.
    for key, n in closed.items():
        assert seen.get(key, 0) >= n, (key, n, seen.get(key))


def test_rate_limit_429_with_retry_after(allowed):
    """A fresh token (own budget) gets exactly `allowed` answers per minute, then 429 too.many.requests."""
    c = new_client()
    routing = gc.RoutingApi(c)
    ok = 0
    exc = None
    for i in range(allowed + 20):
        try:
            routing.get_routing_wrapupcodes(page_size=1)
        except ApiException as e:
            exc = e
            break
        ok += 1
        h = headers_of(c)
        assert h["inin-ratelimit-count"] == str(i + 1), (i, h["inin-ratelimit-count"])
        assert h["inin-ratelimit-allowed"] == str(allowed)
        assert 1 <= int(h["inin-ratelimit-reset"]) <= 60
    assert exc is not None, f"no 429 after {allowed + 20} requests"
    assert ok == allowed, f"429 after {ok} requests, allowed is {allowed}"
    body = error_of(exc, 429)
    assert body["code"] == "too.many.requests"
    headers = {k.lower(): v for k, v in exc.headers.items()}
    assert headers.get("retry-after", "").isdigit(), headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers.get("inin-ratelimit-allowed") == str(allowed)

    # Budgets are per token: another token of the same client is not limited.
    other = new_client()
    listing, _ = checked(other, "WrapupCodeEntityListing", gc.RoutingApi(other).get_routing_wrapupcodes,
                         page_size=1)
    assert listing.total >= 1
