"""A server whose only worker always fails in ``__init__``: the server must give up."""

from mosec import Server, Worker


class Broken(Worker):
    """Cannot start."""

    def __init__(self):
        super().__init__()
        raise RuntimeError("this model cannot be loaded")

    def forward(self, data):
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Broken)
    server.run()
