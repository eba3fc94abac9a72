"""A server with a registered daemon (a subprocess.Popen or, with --mp-daemon, a Process).

The daemon's pid is written to ``$TEST_OUT_DIR/daemon.pid``; the test ends the daemon to see the
server drain and exit non-zero. ``--mp-daemon`` is the script's own flag: the server's parser
leaves it alone.
"""

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys

from behaviour import act, write_atomic

from mosec import Server, Worker


class Echo(Worker):
    """Acts on each request."""

    def forward(self, data):
        return act(data)


def wait_forever():
    """The multiprocessing daemon's body."""
    signal.pause()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mp-daemon", action="store_true")
    own, _ = parser.parse_known_args()
    if own.mp_daemon:
        proc = multiprocessing.get_context("spawn").Process(target=wait_forever)
        proc.start()
        name = "mp-sidecar"
    else:
        code = "import signal; signal.pause()"
        proc = subprocess.Popen([sys.executable, "-c", code])
        name = "popen-sidecar"
    write_atomic(os.path.join(os.environ["TEST_OUT_DIR"], "daemon.pid"), str(proc.pid))
    server = Server()
    server.append_worker(Echo)
    server.register_daemon(name, proc)
    server.run()
