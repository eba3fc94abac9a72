"""A trivial HTTP server with the standard library only: the harness's own test target.

It answers ``GET /`` with 200 and echoes any ``POST`` body back as JSON, so the harness can be
exercised without any serving stack. Two flags make it a test of process clean-up:
``--spawn-child`` starts a long-sleeping child process that ignores SIGTERM (a stuck worker),
``--spawn-detached`` starts one in a session of its own (out of the process group), and
``--ignore-sigterm`` makes the server ignore SIGTERM so that only SIGKILL stops it.
"""

import argparse
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """GET answers 200, POST echoes the body."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed ACK wait

    def _answer(self, body):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (the name is http.server's)
        self._answer(b"{}")

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("content-length", "0"))
        self._answer(self.rfile.read(length))

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        """Stay quiet: one line per request would only fill the log."""


def main():
    """Parse the flags, start the optional child, serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--spawn-detached", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    args, _ = parser.parse_known_args()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    if args.spawn_child:
        subprocess.Popen([sys.executable, "-c", code])
    if args.spawn_detached:
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    print(f"stub server on {args.address}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
