#!/usr/bin/env python3
"""A loopback TCP proxy that delays every chunk by a fixed time in each direction, to put
a network's round trip between snap and the test registries (bench/images.sh).

    latency-proxy.py DELAY_MS TARGET_HOST:PORT...
prints one line "LISTEN_PORT TARGET" per target once listening, then serves until killed.
"""
import asyncio
import sys


async def pump(reader, writer, delay):
    queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data or None))
            if not data:
                break
    except ConnectionError:
        await queue.put((loop.time(), None))
    await task


async def serve(target, delay):
    host, port = target.rsplit(":", 1)

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(host, int(port))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, sw, delay), pump(sr, cw, delay), return_exceptions=True)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], target, flush=True)
    return srv


async def main():
    delay = float(sys.argv[1]) / 1000.0
    servers = [await serve(t, delay) for t in sys.argv[2:]]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
