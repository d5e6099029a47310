#!/usr/bin/env python3
"""Fixed work against a running `wrapup serve` (see intake_cpu.sh): C keep-alive connections POST one `user.end` envelope each (UUID
ids, one fresh conversation per request) at RATE requests/s in total for SECS seconds. Prints the server's CPU
seconds (utime+stime from /proc/PID/stat) over the run, the requests answered 202, and CPU microseconds per request."""
import asyncio, json, os, sys, time, uuid

HOST, PORT, PID, RATE, SECS, C, KEY = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
TICK = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK

P, S, Q, U = ("00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000b1",
              "00000000-0000-4000-8000-0000000000c1", "00000000-0000-4000-8000-0000000000d1")

def body(n, run):
    conv = f"{run:08x}-0000-4000-8000-{n:012x}"
    at = int(time.time() * 1000)
    return json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": "v2.detail.events.conversation.{id}.user.end",
        "source": "aws.partner/genesys.com/cloud/bench/wrapup-bench", "account": "000000000000", "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {"topicName": f"v2.detail.events.conversation.{conv}.user.end",
        "version": "2", "eventBody": {"eventTime": at, "conversationId": conv, "participantId": P, "sessionId": S,
        "mediaType": "VOICE", "direction": "inbound", "queueId": Q, "userId": U, "interactingDurationMs": 30000,
        "disconnectType": "peer"}, "metadata": {"CorrelationId": str(uuid.uuid4())}}}).encode()

async def conn(i, counter, deadline, run):
    r, w = await asyncio.open_connection(HOST, PORT)
    interval = C / RATE
    nxt = time.monotonic() + interval * i / C
    n = i
    while time.monotonic() < deadline:
        await asyncio.sleep(max(0, nxt - time.monotonic()))
        nxt += interval
        b = body(n, run); n += C
        w.write(b"POST /intake/gen HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-wrapup-intake-key: " + KEY.encode() +
                b"\r\ncontent-length: " + str(len(b)).encode() + b"\r\n\r\n" + b)
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        await r.readexactly(length)
        counter[head.split()[1].decode()] = counter.get(head.split()[1].decode(), 0) + 1
    w.close()

async def main():
    run = int(time.time()) & 0xffffffff
    counter = {}
    c0, t0 = cpu(PID), time.monotonic()
    await asyncio.gather(*[conn(i, counter, t0 + SECS, run) for i in range(C)])
    await asyncio.sleep(2)  # let workers finish deciding the legs
    c1 = cpu(PID)
    ok = counter.get("202", 0)
    print(json.dumps({"answers": counter, "secs": round(time.monotonic() - t0, 1), "server_cpu_s": round(c1 - c0, 2),
                      "cpu_us_per_request": round(1e6 * (c1 - c0) / max(ok, 1), 1)}))

asyncio.run(main())
