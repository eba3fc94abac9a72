"""``python -m benchmarks chaos``: how the server fails, under steady load, bounded in time.

Layout:

- ``target.py``: the chaos server (``targets/chaos_server.py``) under ours or upstream, its
  workers, its metrics;
- ``load.py``: the steady client mix (valid, invalid, slow, random client timeouts) and its tally;
- ``faults.py``: one function per fault (``kill -9`` of workers, a disconnect storm, a stuck
  worker, the store daemon killed, an overfull arena) and which targets each applies to;
- ``leaks.py``: baselines, what stayed above them, what outlived a graceful stop;
- ``run.py``: one fresh server per fault and target, in order;
- ``report.py``: the table and ``benchmarks/RELIABILITY.md``.
"""
