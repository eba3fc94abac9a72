#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, then builds the extension in
# place. Safe to run again: each step is skipped or quick when already done.
#
#   scripts/install.sh            # the runtime with the dev, demo and bench extras (make install)
#   scripts/install.sh demo       # the runtime with only the named extras (make demo)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
EXTRAS=${1:-dev,demo,bench}

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
# The package with its extras; the extension is (re)built into mosec/. pip is verbose only so
# that cargo's progress shows; its own lines go to the log, shown whole if the build fails.
log=$(mktemp -t mosec-install.XXXXXX.log)
echo "install.sh: installing mosec[$EXTRAS] and building the Rust extension;" \
    "the first time takes a few minutes (cargo's progress below, full log in $log)"
set +e
"$PY" -m pip install -v --disable-pip-version-check --no-build-isolation -e ".[$EXTRAS]" 2>&1 \
    | tee "$log" | { grep --line-buffered -E '^ *(Compiling|Finished|Built wheel) |^ *📦' || true; }
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    cat "$log" >&2
    echo "install.sh: pip install failed (exit $status); the log is above and in $log" >&2
    exit "$status"
fi
rm -f "$log"

# The benchmark harness brings its own installer (load generator, redis-server, plotting). The
# comparison targets' virtual environments are made by `make bench` on first use, not here, so
# installing for the tests stays quick.
if [[ ",$EXTRAS," == *,bench,* ]] && [ -f benchmarks/install.sh ]; then
    BENCH_SKIP_VENVS=1 PY="$PY" bash benchmarks/install.sh
fi
