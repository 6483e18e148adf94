"""N slow-header (slowloris) clients against a cloakroom on 127.0.0.1:PORT
(issue 17): each completes its TLS handshake, sends a request line and
then one header byte every 2 s, and reconnects when the proxy cuts it (at
`request_header_timeout`). Runs until killed.

    python3 bench/slowloris.py PORT N

Driven by bench/slowloris.sh, which measures other clients meanwhile.
"""
import asyncio, ssl, sys, time

ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])


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


asyncio.run(attack(int(sys.argv[1]), int(sys.argv[2])))
