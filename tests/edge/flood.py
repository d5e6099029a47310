#!/usr/bin/env python3
"""The issue's probe, against a release `wrapup serve` with the default [http] limits: N connections that each send
`POST /intake/gen HTTP/1.1\r\n` and nothing more, held open; meanwhile /health is timed on fresh connections and the
service's open file descriptors are counted. Prints one JSON line."""
import asyncio, json, os, resource, sys, time

HOST, PORT, N, PID = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1

async def hold(results, sem):
    async with sem:
        try:
            r, w = await asyncio.open_connection(HOST, PORT)
        except OSError:
            results["connect_failed"] += 1
            return
    t0 = time.monotonic()
    w.write(b"POST /intake/gen HTTP/1.1\r\n")
    try:
        await w.drain()
        while True:
            data = await asyncio.wait_for(r.read(4096), timeout=60)
            if not data:
                break
    except (OSError, asyncio.TimeoutError):
        pass
    results["held"].append(time.monotonic() - t0)
    w.close()

async def health():
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), timeout=5)
        w.write(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        await w.drain()
        line = await asyncio.wait_for(r.readline(), timeout=5)
        w.close()
        return time.monotonic() - t0, line.decode().strip()
    except Exception as e:
        return time.monotonic() - t0, repr(e)

async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {"connect_failed": 0, "held": []}
    sem = asyncio.Semaphore(500)
    started = time.monotonic()
    tasks = [asyncio.create_task(hold(results, sem)) for _ in range(N)]
    probes, most_fds = [], 0
    while not all(t.done() for t in tasks):
        most_fds = max(most_fds, fds(PID))
        probes.append(await health())
        await asyncio.sleep(0.25)
    await asyncio.gather(*tasks)
    held = sorted(results["held"])
    worst = max(p[0] for p in probes)
    print(json.dumps({
        "connections": N, "connect_failed": results["connect_failed"], "seconds": round(time.monotonic() - started, 2),
        "service_fds_max": most_fds, "health_probes": len(probes), "health_worst_s": round(worst, 3),
        "health_not_200": [p for p in probes if "200" not in p[1]],
        "held_p50_s": round(held[len(held) // 2], 3) if held else None, "held_max_s": round(held[-1], 3) if held else None,
    }))

asyncio.run(main())
