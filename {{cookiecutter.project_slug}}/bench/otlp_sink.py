"""An OTLP/HTTP receiver that accepts every export and discards it: the collector of the tracing rows,
on loopback, so they measure what tracing costs the api and not what a real backend does with the
spans. `python -m bench.otlp_sink PORT`.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)  # an empty body is an empty ExportTraceServiceResponse
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Discard).serve_forever()
