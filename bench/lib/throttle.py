"""A TCP relay on loopback that limits what the server sends to RATE bytes
per second, all connections together: a git server behind a forge's link
for the benches (git daemon itself sends as fast as the disk allows).

Usage: throttle.py UPSTREAM_PORT RATE; prints the port it listens on.
"""

import asyncio
import sys
import time

UPSTREAM, RATE = int(sys.argv[1]), float(sys.argv[2])
CHUNK = 16384


class Bucket:
    """One budget shared by every connection's server-to-client direction."""

    def __init__(self, rate):
        self.rate, self.next = rate, time.monotonic()

    async def take(self, n):
        now = time.monotonic()
        self.next = max(self.next, now) + n / self.rate
        if self.next > now:
            await asyncio.sleep(self.next - now)


async def pump(reader, writer, bucket=None):
    try:
        while data := await reader.read(CHUNK):
            if bucket:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


async def main():
    bucket = Bucket(RATE)

    async def relay(c_reader, c_writer):
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", UPSTREAM)
        await asyncio.gather(pump(c_reader, s_writer), pump(s_reader, c_writer, bucket))
        c_writer.close()
        s_writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
