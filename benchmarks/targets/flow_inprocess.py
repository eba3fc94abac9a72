"""Run one flows-benchmark scenario in process and print its throughput as JSON.

Usage: ``FLOW_MPSERVER=<module> python flow_inprocess.py small|ensemble <items>``. The items go
through ``Server.stream`` (the server keeps its pipeline full, up to its capacity), after a
warm-up of a few items; the line printed is ``{"items": n, "seconds": s}``.
"""

import json
import sys
import time

import flow_workers


def main() -> None:
    scenario, count = sys.argv[1], int(sys.argv[2])
    flow = flow_workers.small_flow() if scenario == "small" else flow_workers.ensemble_flow()
    if scenario == "small":
        items = list(range(count))
    else:
        items = [flow_workers.array(seed) for seed in range(8)]
        items = [items[n % len(items)] for n in range(count)]
    with flow_workers.mp.Server(flow) as server:
        for _ in server.stream(items[:4]):
            pass
        started = time.perf_counter()
        done = sum(1 for _ in server.stream(items, return_exceptions=False))
        seconds = time.perf_counter() - started
    print(json.dumps({"items": done, "seconds": seconds}))


if __name__ == "__main__":
    main()
