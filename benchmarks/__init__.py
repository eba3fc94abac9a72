"""Benchmark harness: the same scenarios against our server, upstream mosec and LitServe.

Run ``python -m benchmarks run --help`` from the repository root; ``benchmarks/README.md`` explains
the design. Layout, one concept per module:

- ``scenarios``: what is measured (request body, server-side worker graph, load shape).
- ``catalog``: who is measured (targets: a runtime, a server script and an IPC mixin).
- ``runtimes``: the interpreter of each target, with the virtual environments the harness installs.
- ``processes`` / ``monitor`` / ``memory``: start and stop process trees by PID; CPU and memory
  of a tree (shared memory counted once).
- ``servers`` / ``redis_daemon``: a running target server, and the Redis it may need.
- ``loadgen``: the load generator (``wrk``), its Lua script and the parsing of its output.
- ``stats``: medians, spreads and ratios.
- ``runner``: the loop that alternates targets; ``progress``: the progress bar.
- ``report`` / ``plots`` / ``machine``: tables of a scenario, PNG plots, the machine record.
- ``document``: the written results of a run (Markdown, JSON, plots, ``RESULTS.md``).
- ``cli``: the command line.
"""
