#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, then builds the extension in
# place. Safe to run again: each step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}

# The Rust toolchain comes with the machine; everything else from its registries.
if ! command -v cargo >/dev/null; then
    echo "install.sh: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi

# The demo's Debian packages: opencv-python (a dependency of rapidocr-onnxruntime) links libGL
# and GLib, and the demo draws its text in the DejaVu fonts (Pillow's own font otherwise).
# (grep without -q reads all of ldconfig's output, so pipefail sees no SIGPIPE.)
debs=()
ldconfig -p 2>/dev/null | grep 'libGL\.so\.1 ' >/dev/null || debs+=(libgl1)
ldconfig -p 2>/dev/null | grep 'libglib-2\.0\.so\.0 ' >/dev/null || debs+=(libglib2.0-0)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || debs+=(fonts-dejavu-core)
if [ ${#debs[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "install.sh: apt-get install ${debs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${debs[@]}" >/dev/null
fi

# maturin must be present for the no-isolation editable build below.
"$PY" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2"
# The package with its development and demo extras; the extension is (re)built into mosec/.
"$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[dev,demo,bench]"

# The benchmark harness brings its own installer (load generator, redis-server, plotting). The
# comparison targets' virtual environments are made by `make bench` on first use, not here, so
# installing for the tests stays quick.
if [ -f benchmarks/install.sh ]; then
    BENCH_SKIP_VENVS=1 PY="$PY" bash benchmarks/install.sh
fi
