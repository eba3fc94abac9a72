"""Tests of the peers' place in the harness: their wires, catalog entries, selection, the
``--quick`` rule and the best-peer table. Offline and fast: nothing here installs or starts a peer
(the full run does); the wires are checked against the bodies each protocol defines.
"""

import json

import pytest

from benchmarks import cli, document, peers
from benchmarks.catalog import TARGETS
from benchmarks.runner import Settings
from benchmarks.runtimes import RUNTIMES
from benchmarks.scenarios import SCENARIOS, by_name
from benchmarks.selection import select, unavailable
from benchmarks.wire import BENTOML_WIRE, JSON_WIRE, TRITON_WIRE

PEER_TARGETS = ("ray-serve", "pytriton", "bentoml", "mpservice")


def test_json_wire_is_the_scenario_itself():
    echo = by_name("echo")
    assert JSON_WIRE.body(echo) == echo.body
    assert JSON_WIRE.content_type(echo) == "application/json"
    assert JSON_WIRE.answer(echo, b'{"id": 7}') == {"id": 7}


def test_triton_wire_sends_the_document_as_a_bytes_tensor_and_reads_it_back():
    echo = by_name("echo")
    body = json.loads(TRITON_WIRE.body(echo))
    (tensor,) = body["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("doc", "BYTES", [1])
    assert json.loads(tensor["data"][0]) == echo.request
    reply = {
        "outputs": [{"name": "doc", "datatype": "BYTES", "shape": [1], "data": tensor["data"]}]
    }
    answer = TRITON_WIRE.answer(echo, json.dumps(reply).encode())
    assert answer == echo.request and echo.check(answer) is None


def test_triton_wire_sends_floats_as_a_batch_of_one_and_reads_each_output():
    batch = by_name("batch")
    (tensor,) = json.loads(TRITON_WIRE.body(batch))["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("x", "FP32", [1, 64])
    assert tensor["data"] == batch.request["x"]
    reply = {
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 1], "data": [-6.3]},
            {"name": "batch", "datatype": "INT32", "shape": [1, 1], "data": [3]},
        ]
    }
    answer = TRITON_WIRE.answer(batch, json.dumps(reply).encode())
    assert answer == {"y": -6.3, "batch": 3} and batch.check(answer) is None
    with pytest.raises(ValueError, match="no Triton outputs"):
        TRITON_WIRE.answer(batch, b'{"error": "Request for unknown model"}')


def test_bentoml_wire_batches_only_the_batching_scenario():
    batch, echo = by_name("batch"), by_name("echo")
    assert json.loads(BENTOML_WIRE.body(batch)) == {"x": [batch.request["x"]]}
    assert BENTOML_WIRE.answer(batch, b'[{"y": 1.5, "batch": 2}]') == {"y": 1.5, "batch": 2}
    with pytest.raises(ValueError, match="batch of one"):
        BENTOML_WIRE.answer(batch, b'[{"y": 1.5}, {"y": 2.5}]')
    assert BENTOML_WIRE.body(echo) == echo.body
    assert BENTOML_WIRE.answer(echo, b'{"id": 7}') == {"id": 7}


def test_peers_are_pinned_in_their_own_environments_and_full_run_only():
    for name in PEER_TARGETS:
        target = TARGETS[name]
        runtime = RUNTIMES[target.runtime]
        assert target.full_only and not target.hidden
        assert runtime.venv == f".venv-{target.runtime}" and not runtime.repo_on_path
        assert any("==" in requirement for requirement in runtime.requirements)
        assert runtime.package is not None
    assert not any(t.full_only for t in TARGETS.values() if t.runtime in ("ours", "upstream"))


def test_what_each_peer_can_express():
    expressible = {
        name: [s.name for s in SCENARIOS if TARGETS[name].unsupported(s) is None]
        for name in PEER_TARGETS
    }
    every = ["echo", "pipeline", "tensor-1m", "tensor-12m", "tensor-192m", "batch"]
    assert expressible == {
        "ray-serve": every,
        "pytriton": ["echo", "batch"],
        "bentoml": every,
        "mpservice": every,
    }
    why = TARGETS["pytriton"].unsupported(by_name("tensor-1m"))
    assert why == "pytriton_server.py cannot express the tensor scenario"


def test_a_peer_that_did_not_install_is_skipped_with_the_reason():
    failed = {"error": "installing its environment failed: pip exited 1"}
    reason = unavailable(TARGETS["bentoml"], failed)
    assert (
        reason == "BentoML 1.4.40 is not available: installing its environment failed: pip exited 1"
    )
    assert "ray does not import" in unavailable(TARGETS["ray-serve"], {"python": "3.11"})
    assert unavailable(TARGETS["ray-serve"], {"ray": "2.60.0"}) is None
    probes = {"ours": {"engine": "0.1.0", "mixins": []}, "bentoml": failed, "ray": {"ray": "2"}}
    chosen = [TARGETS[n] for n in ("ours-pickle", "bentoml", "ray-serve")]
    plan, skipped = select([by_name("echo")], chosen, probes, explicit=True)
    assert [t.name for t in plan["echo"]] == ["ours-pickle", "ray-serve"]
    assert [(s.scenario, s.target) for s in skipped] == [("*", "bentoml")]


def test_quick_leaves_the_peers_out_unless_named():
    args = cli.parser().parse_args(["run", "--quick"])
    _, targets, explicit = cli.choose(args)
    kept, left_out = cli.quick_leaves_out(targets, quick=True, explicit=explicit)
    assert not any(t.name in PEER_TARGETS for t in kept) and "ours-pickle" in [t.name for t in kept]
    assert sorted(s.target for s in left_out) == sorted(PEER_TARGETS)
    assert all(s.scenario == "*" and "full run" in s.reason for s in left_out)
    named = cli.choose(cli.parser().parse_args(["run", "--quick", "--targets", "ray-serve"]))
    assert cli.quick_leaves_out(named[1], quick=True, explicit=named[2]) == (
        [TARGETS["ray-serve"]],
        [],
    )
    kept, left_out = cli.quick_leaves_out(targets, quick=False, explicit=False)
    assert kept == targets and left_out == []


def _sample(target, repeat, rps, p99, scenario="echo"):
    return {
        "scenario": scenario,
        "target": target,
        "repeat": repeat,
        "position": 0,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "cpu_s": 1.0,
        "cpu_ms_per_request": 1000.0 / rps,
        "peak_memory_mib": 100.0,
        "errors": 0,
    }


def test_best_of_ours_against_the_best_peer_with_the_missing_named():
    samples = [
        _sample("ours-pickle", 0, 200.0, 5.0),
        _sample("ours-pickle", 1, 100.0, 10.0),
        _sample("ours-shm", 0, 140.0, 5.0),
        _sample("ours-shm", 1, 140.0, 5.0),
        _sample("ray-serve", 0, 40.0, 50.0),
        _sample("ray-serve", 1, 50.0, 40.0),
        _sample("mpservice", 0, 100.0, 10.0),
        _sample("mpservice", 1, 50.0, 20.0),
    ]
    skipped = [
        {"scenario": "echo", "target": "bentoml", "reason": "did not start: exited with 1"},
        {"scenario": "*", "target": "pytriton", "reason": "PyTriton 0.7.0 is not available"},
        {"scenario": "echo", "target": "ours-numbin", "reason": "one stage, no IPC"},
        {"scenario": "echo", "target": "upstream-numbin", "reason": "same as upstream-pickle"},
        {"scenario": "batch", "target": "ray-serve", "reason": "elsewhere"},
    ]
    assert [s["target"] for s in peers.not_measured("echo", skipped)] == ["bentoml", "pytriton"]
    assert peers.is_peer("upstream-pickle") and peers.is_peer("litserve")
    assert not peers.is_peer("ours-arrow") and not peers.is_peer("stub")
    result = {
        "meta": {
            "started": "now",
            "command": "python -m benchmarks run",
            "settings": vars(Settings(duration_s=5, warmup_s=1, repeats=2)),
            "baseline": None,
            "machine": {
                "cpu": "cpu",
                "cores": 2,
                "memory_gib": 1.0,
                "os": "os",
                "wrk": "wrk 4",
                "git_commit": "abc",
                "git_dirty": False,
            },
            "runtimes": {
                "ours": {"mosec": "0.1.0", "python": "3.11"},
                "ray": {"ray": "2.60.0", "python": "3.11"},
            },
        },
        "samples": samples,
        "skipped": skipped,
    }
    summary = document.summaries(result)[0]
    found = peers.compare(summary, samples)
    # Best medians: ours-pickle 150 (ours-shm 140), mpservice 75 (ray-serve 45); paired per
    # repeat: 200 / 100 and 100 / 50, so 2.00×; p99 5 / 10 and 10 / 20.
    assert (found["ours"]["target"], found["peer"]["target"]) == ("ours-pickle", "mpservice")
    assert found["ratios"]["rps"].median == 2.0 and found["ratios"]["p99_ms"].median == 0.5
    text = document.render(result)
    assert "### Headline: our best target against the best peer" in text
    row = "| echo | `ours-pickle` | 150 (100–200) | `mpservice` | 75.0 (50.0–100) | 2.00×"
    assert row in text
    assert "`bentoml`, `pytriton` |" in text
    assert "| `bentoml` | not measured: did not start: exited with 1 |" in text
    assert "ray: ray 2.60.0 (python 3.11)" in text


def test_results_page_adds_the_in_process_flows_table():
    result = {
        "meta": {
            "started": "now",
            "command": "python -m benchmarks run",
            "settings": vars(Settings(duration_s=5, warmup_s=1, repeats=1)),
            "baseline": None,
            "machine": {
                "cpu": "cpu",
                "cores": 2,
                "memory_gib": 1.0,
                "os": "os",
                "wrk": "wrk 4",
                "git_commit": "abc",
                "git_dirty": False,
            },
            "runtimes": {},
        },
        "samples": [_sample("ours-pickle", 0, 200.0, 5.0), _sample("mpservice", 0, 100.0, 9.0)],
        "skipped": [],
    }
    table = "| scenario | mpservice items/s |\n| --- | ---: |\n| small | 1.0 |\n"
    page = document.results_page(result, "figures", table)
    assert page.index("### Headline: our best") < page.index("### mpservice in process")
    assert page.endswith(table)
    assert "### mpservice in process" not in document.results_page(result, "figures")
    noted = document.results_page(result, "figures", None, "### Where a peer wins\n\nnowhere\n")
    assert noted.index("nowhere") < noted.index("## Benchmark run")
