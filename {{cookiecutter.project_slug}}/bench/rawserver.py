"""A canned-answer HTTP/1.1 server, far faster than any Python web framework, to find the load
generator's own ceiling: against it, the client is the bottleneck, so its req/s is the most the
client can measure on this machine. Not a web server: it answers every request with the same
200 and ignores what was asked. `python -m bench.rawserver PORT`.
"""

import asyncio
import sys

from .loadgen import run

BODY = b'{"status":"ok"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class CannedAnswer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        # GET requests only (no body): one answer per complete header block, pipelining included.
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * count)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(CannedAnswer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run(serve(int(sys.argv[1])))
