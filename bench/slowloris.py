"""Latency of ordinary keep-alive requests to a cloakroom on
127.0.0.1:PORT, first alone and then while N slow-header clients hold
connections open (issue 17): each slow client completes its TLS handshake,
sends a request line and then one header byte every 2 s, and reconnects
when the proxy cuts it (at `request_header_timeout`).

    python3 bench/slowloris.py measure PORT SECONDS   # prints p50/p99/p99.9 in ms
    python3 bench/slowloris.py attack PORT N          # runs until killed

Driven by bench/slowloris.sh, which runs the two as separate processes.
"""
import asyncio, ssl, sys, time

ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
REQ = b"GET /.cloakroom/session HTTP/1.1\r\nHost: localhost\r\n\r\n"


async def measure(port, secs):
    # Four keep-alive connections, one request at a time each, paced at
    # about 250 requests/s in all, so the proxy is never the bottleneck.
    lat = []
    async def client():
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        end = time.monotonic() + secs
        while time.monotonic() < end:
            t = time.perf_counter()
            w.write(REQ); await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
            await r.readexactly(n)
            lat.append(time.perf_counter() - t)
            await asyncio.sleep(0.015)
        w.close()
    await asyncio.gather(*[client() for _ in range(4)])
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    print(f"{len(lat)} requests: p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, p99.9 {q(0.999):.2f} ms", flush=True)


async def attack(port, n):
    async def slow(i):
        await asyncio.sleep(i * 0.005)  # ramp up over 5 s per 1,000
        while True:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
                w.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-a: "); await w.drain()
                while True:
                    await asyncio.sleep(2)
                    w.write(b"a"); await w.drain()
                    if r.at_eof():
                        break
            except (OSError, ssl.SSLError, ConnectionError):
                await asyncio.sleep(0.1)
    await asyncio.gather(*[slow(i) for i in range(n)])


mode, port = sys.argv[1], int(sys.argv[2])
if mode == "measure":
    asyncio.run(measure(port, float(sys.argv[3])))
else:
    asyncio.run(attack(port, int(sys.argv[3])))
