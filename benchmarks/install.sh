#!/usr/bin/env bash
# Installs what the benchmark harness needs; safe to run again (each step is skipped when done):
#   - wrk (load generator), redis-server (for the Redis IPC targets) and haproxy (the load
#     balancer of benchmarks/scale_out.py), from Debian;
#   - matplotlib and psutil (the package's `bench` extra) for the interpreter running the harness;
#   - the virtual environments of upstream mosec 0.9.8 and LitServe (benchmarks/.venv-*),
#     unless BENCH_SKIP_VENVS=1 (then `python -m benchmarks run` creates them on first use);
#     the peers' (Ray Serve, PyTriton, BentoML, mpservice) are made by the full run, or ahead
#     of it by `python -m benchmarks setup`, never here: CI runs this script.
# Usage: bash benchmarks/install.sh   (PY=python3.11 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "benchmarks/install.sh: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

if ! "$PY" -c "import matplotlib, psutil" 2>/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[bench]"
fi

if [ "${BENCH_SKIP_VENVS:-0}" != "1" ]; then
    "$PY" -m benchmarks setup --runtimes upstream,litserve
fi
