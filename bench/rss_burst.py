"""Opens N TLS connections to a cloakroom on 127.0.0.1:PORT (one request
each, then idle), closes them, three rounds, and prints the process's RSS
idle, with the connections open (and the cost per connection), 3 s after
they closed and 15 s after (the proxy trims its heap within 5 s of a
burst; an allocator that returns memory on a timer may take longer).
Driven by bench/rss_burst.sh, which starts the proxy.

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
    idle=rss()
    print("idle", idle, "MiB", flush=True)
    for rnd in range(3):
        sem=asyncio.Semaphore(200)
        ws=await asyncio.gather(*[one(sem) for _ in range(N)])
        await asyncio.sleep(1); peak=rss()
        for w in ws: w.close()
        await asyncio.sleep(3); soon=rss()
        await asyncio.sleep(12)
        per=(peak-idle)*1024/N
        print(f"round {rnd+1}: {N} connections open {peak} MiB ({per:.1f} KiB each), "
              f"after close {soon} MiB at 3 s, {rss()} MiB at 15 s", flush=True)
asyncio.run(main())
