"""The demo: start the echo pipeline, send it a few requests at once, print the answers, stop.

Run it from the repository root::

    python examples/demo.py

It starts ``examples/echo_pipeline.py`` as a server on a free port of 127.0.0.1, waits until the
server answers ``GET /``, sends eight requests concurrently, prints each answer, then stops the
server with SIGTERM by its PID (it drains and exits 0) and exits 0 itself. Any failure exits 1.
The server's own log lines go to a temporary file whose name is printed.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "echo_pipeline.py"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
REQUESTS = 8


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_status(url: str) -> int:
    """The status of ``GET url``, or 0 when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def wait_ready(server: subprocess.Popen[bytes], url: str) -> None:
    """Poll ``GET /`` until it answers 200; fail if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while get_status(url + "/") != 200:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not ready after {START_TIMEOUT_S}s")
        time.sleep(0.1)


def infer(url: str, text: str) -> dict:
    """POST one request to the pipeline and decode the answer."""
    request = urllib.request.Request(
        url + "/inference",
        data=json.dumps({"text": text}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> int:
    """Run the demo; returns the exit code."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    # Works from a source checkout too, where mosec may not be installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    command = [sys.executable, str(SERVER_SCRIPT), "--address", "127.0.0.1", "--port", str(port)]
    # The server's JSON log lines go to a file, so the answers are easy to read here.
    log = tempfile.NamedTemporaryFile(prefix="mosec_demo_", suffix=".log", delete=False)
    print(f"starting {SERVER_SCRIPT.name} on {url} (server log: {log.name})", flush=True)
    server = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        wait_ready(server, url)
        texts = [f"hello {n}" for n in range(REQUESTS)]
        with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
            answers = list(pool.map(lambda text: infer(url, text), texts))
        for answer in answers:
            print(json.dumps(answer), flush=True)
        if [answer["text"] for answer in answers] != texts:
            raise RuntimeError("the answers do not echo the requests")
    except Exception as err:
        print(f"demo failed: {err}; the server's log is in {log.name}", file=sys.stderr)
        return 1
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(f"server stopped with exit code {server.returncode}", flush=True)
    return 0 if server.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
