"""Opens N TLS connections to a cloakroom on 127.0.0.1:PORT (one request
each, then idle), closes them, three rounds, and prints the process's RSS
idle, with the connections open, and after they closed. Driven by
bench/rss_burst.sh, which starts the proxy.

    python3 bench/rss_burst.py N PID PORT
"""
import asyncio, ssl, sys, time
N=int(sys.argv[1]); PID=int(sys.argv[2]); PORT=int(sys.argv[3])
def rss():
    for l in open(f"/proc/{PID}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
ctx=ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
async def one(sem):
    async with sem:
        r,w=await asyncio.open_connection("127.0.0.1",PORT,ssl=ctx,server_hostname="localhost")
        w.write(b"GET /.cloakroom/session HTTP/1.1\r\nHost: localhost\r\n\r\n"); await w.drain()
        await r.readuntil(b"\r\n\r\n")
        return w
async def main():
    print("idle", rss(), "MiB", flush=True)
    for rnd in range(3):
        sem=asyncio.Semaphore(200)
        ws=await asyncio.gather(*[one(sem) for _ in range(N)])
        await asyncio.sleep(1); peak=rss()
        for w in ws: w.close()
        await asyncio.sleep(3)
        print(f"round {rnd+1}: {N} connections open {peak} MiB, after close {rss()} MiB", flush=True)
asyncio.run(main())
