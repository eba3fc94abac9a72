"""Tests of the benchmark harness's own logic (``benchmarks/``), not of any server's speed.

Pure parts (wrk output parsing, medians and ratios, summaries, target selection, options) are
tested on made-up data. Process handling is tested on the harness's standard-library stub server:
every process it starts, including a stuck child and one that left the process group, is gone
after ``stop``. Two runs of ``python -m benchmarks run --quick`` (the stub, then our server on the
echo scenario) check that the table, the JSON and the plots are written and that no process of
the run survives it. No assertion depends on timing.
"""

import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks import arena_startup, cli, document, memory, startup
from benchmarks.catalog import TARGETS
from benchmarks.loadgen import LUA_TEMPLATE, MARKER, LoadGenError, Wrk, parse_wrk_output
from benchmarks.monitor import ResourceMonitor, wait_idle
from benchmarks.net import free_port, redis_ping, request
from benchmarks.processes import ProcessTree
from benchmarks.redis_daemon import RedisDaemon, redis_binary
from benchmarks.report import cell, markdown, pick_baseline, summarize, to_json
from benchmarks.runner import Settings
from benchmarks.scenarios import SCENARIOS, by_name
from benchmarks.selection import select, unavailable
from benchmarks.servers import TargetServer
from benchmarks.stats import Spread, paired_ratios, ratio, ratio_spread, spread

# benchmarks/tests is a package inside the benchmarks package, so pytest puts the repository
# root on sys.path and the harness imports as it does under ``python -m benchmarks``.
REPO = Path(__file__).resolve().parents[2]
STUB = REPO / "benchmarks" / "targets" / "stub_server.py"
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (benchmarks/install.sh)"
)

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:40000/inference
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  500.00us   9.80ms   90.00%
  13680 requests in 2.00s, 2.10MB read
  Non-2xx or 3xx responses: 80
Requests/sec:   6840.00
Transfer/sec:      1.05MB
BENCH_RESULT {"requests":13680,"duration_us":2000000,"bytes":2202000,"errors":{"connect":0,\
"read":1,"write":0,"status":80,"timeout":2},"latency_us":{"p50":1500.0,"p90":2100.0,\
"p99":7870.0,"mean":1520.5,"max":9800.0}}
"""


# --- load generator output ---------------------------------------------------------------------


def test_parse_wrk_output_reads_the_result_line():
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests == 13680
    assert result.duration_s == 2.0
    assert result.errors == {"connect": 0, "read": 1, "write": 0, "status": 80, "timeout": 2}
    assert result.ok_requests == 13600
    assert result.rps == 6800.0
    assert result.error_count == 83
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (1.5, 2.1, 7.87)
    assert result.max_ms == 9.8
    assert result.to_dict()["rps"] == 6800.0


def test_parse_wrk_output_without_result_line_fails():
    with pytest.raises(LoadGenError, match="no result line"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_wrk_output_with_a_broken_result_line_fails():
    with pytest.raises(LoadGenError, match="malformed"):
        parse_wrk_output(MARKER + '{"requests": 3}\n')


def test_zero_duration_gives_zero_throughput():
    line = WRK_OUTPUT.splitlines()[-1].replace('"duration_us":2000000', '"duration_us":0')
    assert parse_wrk_output(line).rps == 0.0


def test_wrk_script_and_command(tmp_path):
    wrk = Wrk("http://127.0.0.1:9/x", b'{"a": 1}', tmp_path / "w")
    script = wrk.script.read_text()
    assert 'wrk.method = "POST"' in script
    assert str(tmp_path / "w" / "body.bin") in script
    assert MARKER.strip() in script and LUA_TEMPLATE.count("{marker}") == 1
    assert (tmp_path / "w" / "body.bin").read_bytes() == b'{"a": 1}'
    if shutil.which("wrk"):
        cmd = wrk.command(concurrency=0, duration_s=0.4, timeout_s=0.2)
        assert cmd[1:9] == [
            "--threads", "1", "--connections", "1", "--duration", "1s", "--timeout", "1s",
        ]  # fmt: skip
        assert cmd[-1] == "http://127.0.0.1:9/x"


# --- medians, ranges, ratios -------------------------------------------------------------------


def test_spread_median_and_range():
    assert spread([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert spread([4, 1, 3, 2]).median == 2.5
    assert spread([]) is None


def test_ratios():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None
    assert paired_ratios([2.0, 4.0, 9.0], [1.0, 0.0, 3.0]) == [2.0, 3.0]
    assert ratio_spread([2.0, 6.0, 3.0], [1.0, 2.0, 2.0]) == Spread(2.0, 1.5, 3.0, 3)
    assert ratio_spread([1.0], [0.0]) is None


def _sample(target, repeat, position, rps, p99, scenario="echo"):
    return {
        "scenario": scenario,
        "target": target,
        "repeat": repeat,
        "position": position,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "cpu_s": 1.0,
        "cpu_ms_per_request": None,
        "peak_memory_mib": 100.0,
        "errors": 0,
    }


def test_summary_pairs_ratios_per_repeat():
    samples = [
        _sample("ours-pickle", 0, 0, 200.0, 5.0),
        _sample("upstream-pickle", 0, 1, 100.0, 10.0),
        _sample("upstream-pickle", 1, 0, 50.0, 20.0),  # a slow moment hits both of repeat 1
        _sample("ours-pickle", 1, 1, 150.0, 10.0),
        _sample("ours-pickle", 2, 0, 210.0, 4.0),  # no baseline sample in repeat 2: unpaired
        _sample("upstream-pickle", 0, 0, 1.0, 1.0, scenario="pipeline"),
    ]
    summary = summarize(samples, "echo")
    assert summary["baseline"] == "upstream-pickle"
    ours, upstream = summary["rows"]
    assert ours["target"] == "ours-pickle"
    assert ours["rps"] == Spread(200.0, 150.0, 210.0, 3)
    assert ours["rps_ratio"] == Spread(2.5, 2.0, 3.0, 2)
    assert ours["p99_ms_ratio"] == Spread(0.5, 0.5, 0.5, 2)
    assert ours["cpu_ms_per_request"] is None
    assert upstream["rps_ratio"] == Spread(1.0, 1.0, 1.0, 2)
    assert ours["peer"] == "upstream-pickle" and ours["rps_peer_ratio"] == ours["rps_ratio"]
    assert upstream["peer"] is None and upstream["rps_peer_ratio"] is None
    table = markdown(summary, by_name("echo"), "16 connections")
    assert "| `ours-pickle` | 200 (150–210) |" in table
    assert "2.50× (2.00–3.00×)" not in table and "2.50× (2.00–3.00)" in table
    assert json.dumps(to_json(summary))


def test_rendered_report_and_results_page():
    samples = [
        _sample("ours-pickle", 0, 0, 200.0, 5.0),
        _sample("upstream-pickle", 0, 1, 100.0, 10.0),
    ]
    machine = {"cpu": "cpu", "cores": 2, "memory_gib": 1.0, "os": "os", "wrk": "wrk 4"}
    result = {
        "meta": {
            "started": "now",
            "command": "python -m benchmarks run",
            "settings": vars(Settings(duration_s=5, warmup_s=1, repeats=1)),
            "baseline": None,
            "machine": {**machine, "git_commit": "abc", "git_dirty": False},
            "runtimes": {"ours": {"mosec": "0.1.0", "python": "3.11"}, "litserve": {"error": "x"}},
        },
        "samples": samples,
        "skipped": [{"scenario": "*", "target": "ours-shm", "reason": "not yet"}],
    }
    text = document.render(result)
    assert "ours: mosec 0.1.0 (python 3.11); litserve: unavailable" in text
    assert "16 connections, 1 × 5 s after 1 s warm-up" in text
    assert "| `ours-pickle` | 200 |" in text and "- * / ours-shm: not yet" in text
    assert "| echo | `ours-pickle` | 200 | 2.00× | 0.50× | `upstream-pickle` | 2.00× |" in text
    page = document.results_page(result, "figures")
    assert page.startswith("# Benchmark results") and "![echo](figures/echo.png)" in page


def test_baseline_choice():
    assert pick_baseline(["a", "upstream-pickle"], None) == "upstream-pickle"
    assert pick_baseline(["a", "upstream-pickle"], "a") == "a"
    assert pick_baseline(["a", "b"], "missing") == "a"
    assert pick_baseline([], None) is None


def test_cell_formatting():
    assert cell(None) == "–"
    assert cell(Spread(12345.6, 12000.0, 13000.0, 3)) == "12,346 (12,000–13,000)"
    assert cell(Spread(1.234, 1.234, 1.234, 1), "×") == "1.23×"


# --- selection and options ---------------------------------------------------------------------

OURS = {"engine": "0.1.0", "mixins": ["NumBinIPCMixin"]}
UPSTREAM = {"engine": None, "mixins": ["NumBinIPCMixin", "RedisShmIPCMixin"]}


def test_unavailable_reasons():
    assert "not built" in unavailable(TARGETS["ours-pickle"], {"engine": None, "mixins": []})
    assert unavailable(TARGETS["ours-pickle"], OURS) is None
    assert "ShmIPCMixin does not exist yet" in unavailable(TARGETS["ours-shm"], OURS)
    assert unavailable(TARGETS["upstream-pickle"], UPSTREAM) is None
    assert "not available" in unavailable(TARGETS["upstream-pickle"], {"error": "no venv"})
    no_redis = unavailable(TARGETS["upstream-redis"], UPSTREAM, has_redis=lambda: False)
    assert "redis-server is not installed" in no_redis
    assert unavailable(TARGETS["upstream-redis"], UPSTREAM, has_redis=lambda: True) is None


def test_select_skips_with_reasons():
    probes = {"ours": OURS, "upstream": UPSTREAM, "litserve": {"litserve": "0.2.19"}}
    targets = [t for t in TARGETS.values() if not t.hidden]
    plan, skipped = select(SCENARIOS, targets, probes, explicit=False, has_redis=lambda: True)
    names = {scenario: [t.name for t in chosen] for scenario, chosen in plan.items()}
    assert names["echo"] == ["ours-pickle", "upstream-pickle", "litserve"]
    assert names["pipeline"] == ["ours-pickle", "upstream-pickle", "upstream-redis"]
    assert "upstream-numbin" in names["tensor-192m"]
    assert "litserve" not in names["tensor-1m"]
    # The probe's "ours" has no ShmIPCMixin, and only the in-place shm target runs the demo.
    assert "vision" not in plan
    reasons = {(s.scenario, s.target): s.reason for s in skipped}
    assert "does not exist yet" in reasons[("*", "ours-shm")]
    assert "cannot carry json" in reasons[("pipeline", "ours-numbin")]
    assert "same as ours-pickle" in reasons[("echo", "ours-numbin")]
    assert "cannot carry vision" in reasons[("vision", "ours-pickle")]
    explicit, _ = select(
        [by_name("echo")], [TARGETS["ours-numbin"]], probes, explicit=True, has_redis=lambda: True
    )
    assert [t.name for t in explicit["echo"]] == ["ours-numbin"]


def test_options():
    args = cli.parser().parse_args(
        ["run", "--quick", "--scenario", "echo,pipeline", "--scenario", "batch", "--repeats", "2"]
    )
    assert cli.settings_from(args) == Settings(
        duration_s=2, warmup_s=1, repeats=2, warmup_each=False
    )
    scenarios, targets, explicit = cli.choose(args)
    assert [s.name for s in scenarios] == ["echo", "pipeline", "batch"]
    assert "stub" not in [t.name for t in targets] and not explicit
    full = cli.settings_from(cli.parser().parse_args(["run", "--concurrency", "3"]))
    assert (full.duration_s, full.repeats, full.connections(by_name("echo"))) == (10, 3, 3)
    assert full.warmup_each
    assert full.duration(by_name("tensor-192m")) == 10
    assert cli.settings_from(args).duration(by_name("tensor-192m")) == 5
    with pytest.raises(SystemExit, match="unknown target"):
        cli.choose(cli.parser().parse_args(["run", "--targets", "nope"]))
    with pytest.raises(SystemExit, match="unknown scenario"):
        cli.choose(cli.parser().parse_args(["run", "--scenario", "nope"]))


def test_scenario_check():
    tensor = by_name("tensor-12m")
    assert tensor.check({"elements": 12 * (1 << 20) // 4, "first": 1.0, "sum": 0}) is None
    assert "missing key" in tensor.check({"first": 1.0})
    assert "expected" in tensor.check({"elements": 1, "first": 1.0})
    assert tensor.check([1]) is not None
    assert by_name("batch").check({"y": 0.3, "batch": 4}) is None


# --- processes ---------------------------------------------------------------------------------


def _stub_tree(tmp_path, *flags):
    port = free_port()
    argv = [sys.executable, str(STUB), "--port", str(port), *flags]
    return ProcessTree(argv, tmp_path / "stub.log").start(), port


def _wait_for(predicate, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_stop_kills_stuck_and_detached_children(tmp_path):
    tree, _ = _stub_tree(tmp_path, "--spawn-child", "--spawn-detached", "--ignore-sigterm")
    try:
        assert _wait_for(lambda: len(tree.processes()) >= 3), tree.log_tail()
        pids = [p.pid for p in tree.seen.values()]
        detached = [p for p in tree.seen.values() if os.getpgid(p.pid) != tree.pid]
        assert detached, "the detached child should be in a session of its own"
    finally:
        tree.stop(grace_s=1.0)
    assert tree.exit_code() is not None
    assert not [p for p in tree.seen.values() if _alive(p)], pids


def test_stop_is_graceful_when_possible(tmp_path):
    tree, _ = _stub_tree(tmp_path)
    assert _wait_for(lambda: "stub server" in tree.log_tail())
    tree.stop()
    assert tree.exit_code() == -15  # SIGTERM's default action: it exited on the first signal
    tree.stop()  # stopping twice is harmless


def _alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_target_server_starts_checks_and_stops(tmp_path):
    server = TargetServer(TARGETS["stub"], by_name("echo"), tmp_path).start(timeout_s=30)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.idle_cpu >= 0.0
        with ResourceMonitor(server.trees) as monitor:
            for _ in range(20):
                status, body = request("POST", server.port, "/inference", b'{"id": 7}')
                assert (status, json.loads(body)) == (200, {"id": 7})
        usage = monitor.usage()
        assert usage.peak_rss_bytes > 0 and usage.processes == 1 and usage.cpu_s >= 0.0
        assert 0 < usage.peak_memory_bytes <= usage.peak_rss_bytes
        assert wait_idle(server.trees, timeout_s=5.0, idle_rate=server.idle_cpu) <= 10.0
        procs = list(server.tree.seen.values())
    finally:
        server.stop()
    assert not [p for p in procs if _alive(p)]


def test_target_server_that_answers_wrongly_is_stopped(tmp_path):
    server = TargetServer(TARGETS["stub"], by_name("pipeline"), tmp_path)
    with pytest.raises(Exception, match="answered wrongly"):
        server.start(timeout_s=30)  # the stub echoes: no "hops" in its answer
    assert server.tree is not None and server.tree.exit_code() is not None


def test_monitor_counts_cpu_of_a_busy_tree(tmp_path):
    busy = "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass\n"
    tree = ProcessTree([sys.executable, "-c", busy], tmp_path / "busy.log")
    try:
        with ResourceMonitor([tree.start()], interval_s=0.05) as monitor:
            _wait_for(lambda: tree.exit_code() is not None)
        assert monitor.usage().cpu_s > 0.0
    finally:
        tree.stop()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_memory_counts_a_shared_object_once():
    path = Path("/dev/shm") / f"bench-test-{os.getpid()}"
    size = 4 << 20
    with open(path, "w+b") as file:
        file.truncate(size)
        first = mmap.mmap(file.fileno(), size)
        second = mmap.mmap(file.fileno(), size)
    try:
        first.write(b"x" * size)  # every page allocated, and mapped twice by this process
        objects = memory.shared_objects(os.getpid())
        assert sorted(objects.values()).count(size) == 1
        assert memory.tree_bytes([os.getpid()]) >= memory.anon_bytes(os.getpid()) + size
        assert memory.tree_bytes([os.getpid(), os.getpid()]) == memory.tree_bytes([os.getpid()])
    finally:
        first.close()
        second.close()
        path.unlink()
    assert memory.anon_bytes(2**22 + 7) == 0 and memory.shared_objects(2**22 + 7) == {}


@pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed")
def test_redis_daemon_starts_and_stops(tmp_path):
    daemon = RedisDaemon(tmp_path / "redis.log").start()
    try:
        assert redis_ping(daemon.port)
        assert daemon.url == f"redis://127.0.0.1:{daemon.port}/0"
        procs = list(daemon.tree.seen.values())
    finally:
        daemon.stop()
    assert not redis_ping(daemon.port)
    assert not [p for p in procs if _alive(p)]


@needs_wrk
def test_wrk_against_the_stub(tmp_path):
    server = TargetServer(TARGETS["stub"], by_name("echo"), tmp_path).start(timeout_s=30)
    try:
        result = Wrk(server.url, b'{"id": 1}', tmp_path / "wrk").run(2, 1, 2.0)
    finally:
        server.stop()
    assert result.requests > 0 and result.errors["status"] == 0


# --- the command, end to end -------------------------------------------------------------------


def _run_quick(tmp_path, *args):
    """Run ``python -m benchmarks run --quick`` with a unique run id; return it and the output."""
    run_id = f"pytest-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, BENCH_RUN_ID=run_id)
    command = [sys.executable, "-m", "benchmarks", "run", "--quick"]
    proc = subprocess.run(
        [*command, "--results-dir", str(tmp_path), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    return run_id, proc


def _survivors(run_id):
    """Processes still alive that carry the run's id in their environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("BENCH_RUN_ID") == run_id and _alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _check_results(tmp_path, proc, target, scenario="echo"):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"### {scenario}:" in proc.stdout
    assert f"| `{target}` |" in proc.stdout
    (outdir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    data = json.loads((outdir / "results.json").read_text())
    assert [s["target"] for s in data["samples"]] == [target]
    sample = data["samples"][0]
    assert sample["scenario"] == scenario and sample["load"]["requests"] > 0
    assert data["meta"]["machine"]["cores"] >= 1
    assert data["summaries"][0]["rows"][0]["rps"]["n"] == 1
    assert (outdir / "table.md").read_text() in proc.stdout
    assert (outdir / f"{scenario}.png").stat().st_size > 0


@needs_wrk
def test_quick_run_on_the_stub_writes_table_json_and_plot(tmp_path):
    run_id, proc = _run_quick(tmp_path, "--targets", "stub", "--scenario", "echo")
    _check_results(tmp_path, proc, "stub")
    assert not _survivors(run_id)


@needs_wrk
def test_interrupted_run_stops_everything(tmp_path):
    run_id = f"pytest-int-{os.getpid()}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "benchmarks", "run", "--targets", "stub", "--scenario", "echo"]
    harness = subprocess.Popen(
        [*command, "--duration", "60", "--results-dir", str(tmp_path)],
        cwd=REPO,
        env=dict(os.environ, BENCH_RUN_ID=run_id),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        servers = lambda: [p for p in _survivors(run_id) if p.pid != harness.pid]  # noqa: E731
        assert _wait_for(lambda: servers() or harness.poll() is not None, timeout_s=60)
        assert servers(), "the stub server should be running"
        harness.send_signal(signal.SIGTERM)
        _, err = harness.communicate(timeout=60)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.communicate()
    assert harness.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert not _survivors(run_id)


def _engine_missing():
    probe = subprocess.run(
        [sys.executable, "-c", "import mosec._engine"], cwd=REPO, capture_output=True
    )
    return probe.returncode != 0


@needs_wrk
@pytest.mark.skipif(_engine_missing(), reason="our extension is not built (make build)")
def test_quick_run_on_our_server(tmp_path):
    run_id, proc = _run_quick(tmp_path, "--targets", "ours-pickle", "--scenario", "echo")
    _check_results(tmp_path, proc, "ours-pickle")
    assert not _survivors(run_id)


# --- start-up benchmark (python -m benchmarks.startup) -----------------------------------------


def test_startup_options():
    args = startup.options([])
    assert (args.repeats, args.scripts) == (7, ["echo", "pipeline"])
    assert args.runtimes == ["ours", "upstream"]
    assert args.poll_ms == 10.0 and args.server_args == []
    args = startup.options(["--scripts", "pipeline", "--server-args", "--log-level debug"])
    assert args.scripts == ["pipeline"] and args.server_args == ["--log-level", "debug"]
    with pytest.raises(SystemExit, match="unknown script"):
        startup.options(["--scripts", "echo,nope"])
    with pytest.raises(SystemExit, match="unknown runtime"):
        startup.options(["--runtimes", "ours,nope"])
    with pytest.raises(SystemExit, match="positive"):
        startup.options(["--repeats", "0"])


def test_startup_schedule_alternates_and_rotates():
    order = startup.schedule(["echo", "pipeline"], ["ours", "upstream"], 2)
    assert order == [
        (0, "echo", "ours"), (0, "echo", "upstream"),
        (0, "pipeline", "ours"), (0, "pipeline", "upstream"),
        (1, "echo", "upstream"), (1, "echo", "ours"),
        (1, "pipeline", "upstream"), (1, "pipeline", "ours"),
    ]  # fmt: skip


def test_startup_summary_and_table():
    samples = [
        startup.Sample("echo", "ours", 2.0, 2.1),
        startup.Sample("echo", "upstream", 1.0, 1.0),
        startup.Sample("echo", "ours", 3.0, 3.0, repeat=1),
        startup.Sample("echo", "upstream", 0.5, 0.6, repeat=1),
        startup.Sample("echo", "ours", 1.0, 1.2, repeat=2),
        startup.Sample("echo", "upstream", 2.0, 2.0, repeat=2),
        startup.Sample("pipeline", "ours", 4.0, 4.0),
    ]
    rows = startup.summarize(samples, ["ours", "upstream"])
    assert [(r["script"], r["measure"]) for r in rows] == [
        ("echo", "GET /"), ("echo", "first inference"),
        ("pipeline", "GET /"), ("pipeline", "first inference"),
    ]  # fmt: skip
    root = rows[0]
    assert root["spreads"]["ours"] == Spread(2.0, 1.0, 3.0, 3)
    assert root["spreads"]["upstream"] == Spread(1.0, 0.5, 2.0, 3)
    assert root["ratio"] == 2.0
    assert rows[2]["spreads"]["upstream"] is None and rows[2]["ratio"] is None
    table = startup.markdown(rows, ["ours", "upstream"], 3)
    assert "median (min–max) of 3 alternating runs" in table
    assert "| script | first 200 on | ours ms | upstream ms | ours/upstream |" in table
    assert "| echo | GET / | 2000 (1000–3000) | 1000 (500–2000) | 2.00× |" in table
    assert "| pipeline | GET / | 4000 (4000–4000) | – | – |" in table


def test_startup_times_the_stub_and_stops_it(tmp_path):
    script = startup.Script("stub", "stub_server.py")
    sample = startup.start_once(script, "stub", tmp_path / "stub.log", poll_s=0.01, timeout_s=30)
    assert (sample.script, sample.runtime) == ("stub", "stub")
    assert 0 < sample.root_s <= sample.inference_s
    assert "stub server on 127.0.0.1:" in (tmp_path / "stub.log").read_text()


def test_startup_reports_a_server_that_exits(tmp_path):
    script = startup.Script("broken", "probe.py")  # not a server: prints and exits
    with pytest.raises(startup.StartupError, match="exited"):
        startup.start_once(script, "stub", tmp_path / "broken.log", timeout_s=30)


def test_arena_startup_reads_every_worker_once_started(tmp_path):
    args = arena_startup.parser().parse_args(["--shm-size", str(64 << 20), "--workers", "1"])
    run = arena_startup.start_once(args, tmp_path / "server.log")
    assert run.root_s > 0
    assert len(run.workers) == 2 and len({worker.pid for worker in run.workers}) == 2
    for worker in run.workers:
        assert worker.mappings == 1 and 0 < worker.rss_shmem < worker.vm_rss
    for worker in run.workers:  # stopped by PID
        assert not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == "zombie"
