"""One route per multiprocessing start method: /spawn, /fork and /forkserver."""

import os

from mosec import Server, Worker


class Where(Worker):
    """Answers with its pid and parent pid."""

    def forward(self, data):
        return {"pid": os.getpid(), "ppid": os.getppid(), "worker_id": self.worker_id}


class Spawned(Where):
    pass


class Forked(Where):
    pass


class ForkServed(Where):
    pass


if __name__ == "__main__":
    server = Server()
    server.append_worker(Spawned, route="/spawn", start_method="spawn")
    server.append_worker(Forked, route="/fork", start_method="fork")
    server.append_worker(ForkServed, route="/forkserver", start_method="forkserver")
    server.run()
