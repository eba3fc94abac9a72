"""The written results of a run: Markdown report, JSON file and plots, from one result dict.

A result dict holds ``meta`` (command, settings, baseline, machine, runtimes), ``samples`` and
``skipped``; the summaries are recomputed from the samples, so ``run`` and ``publish`` (which
turns a saved run into ``benchmarks/RESULTS.md``) print the same tables.
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from benchmarks import peers
from benchmarks.report import headline, markdown, summarize, to_json
from benchmarks.runner import Settings
from benchmarks.runtimes import RUNTIMES
from benchmarks.scenarios import Scenario, by_name

Result = Dict[str, Any]


def summaries(result: Result) -> List[Dict[str, Any]]:
    """One summary per scenario that has samples, in the order they were measured."""
    names = list(dict.fromkeys(s["scenario"] for s in result["samples"]))
    baseline = result["meta"].get("baseline")
    return [summarize(result["samples"], name, baseline) for name in names]


def load_note(settings: Settings, scenario: Scenario) -> str:
    """How a scenario was loaded: ``16 connections, 3 × 10 s after 2 s warm-up``."""
    warmup = f"{settings.warmup_s} s warm-up"
    if not settings.warmup_each:
        warmup = f"one {warmup} of all targets at once"
    return (
        f"{settings.connections(scenario)} connections, {settings.repeats} × "
        f"{settings.duration(scenario)} s after {warmup}"
    )


def runtime_version(runtime: str, probe: Dict[str, Any]) -> str:
    """What a runtime runs, in a few words: ``upstream: mosec 0.9.8 (python 3.11.7)``."""
    if "error" in probe:
        return f"{runtime}: unavailable"
    known = RUNTIMES.get(runtime)
    package = known.package if known is not None else "mosec"
    if package and probe.get(package):
        return f"{runtime}: {package} {probe[package]} (python {probe.get('python')})"
    return f"{runtime}: python {probe.get('python')}"


def _load(machine: Dict[str, Any]) -> str:
    """A warning when the machine was busy with something else as the run started."""
    load = machine.get("load_average_1m")
    if load is None or load < 0.5:
        return ""
    return f" Load average {load} at the start: the machine was shared, numbers are noisy."


def render(result: Result, figures: Optional[str] = None) -> str:
    """The Markdown report: machine line, a table per scenario (and its plot, when ``figures``
    names the folder the PNGs are in, relative to the document), then the skipped pairs."""
    meta = result["meta"]
    machine = meta["machine"]
    settings = Settings(**meta["settings"])
    versions = "; ".join(runtime_version(n, p) for n, p in meta["runtimes"].items())
    dirty = " (dirty)" if machine["git_dirty"] else ""
    lines = [
        f"## Benchmark run {meta['started']}",
        "",
        f"`{meta['command']}` on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), {machine['os']}, {machine['wrk']}, commit "
        f"{machine['git_commit']}{dirty}; {versions}.{_load(machine)}",
        "",
    ]
    every = summaries(result)
    rivals = peers.headline(every, result["samples"], result["skipped"])
    if rivals:
        lines += [
            "### Headline: our best target against the best peer",
            "",
            "Per scenario, the highest median req/s of ours and of the peers (upstream mosec, "
            "LitServe, Ray Serve, PyTriton, BentoML, mpservice); ratios paired per repeat, "
            "above 1 for req/s and below 1 for p99 and CPU per request favour ours.",
            "",
            rivals,
        ]
    top = headline(every)
    if top:
        lines += ["### Headline: our targets against the baseline", "", top]
    for summary in every:
        scenario = by_name(summary["scenario"])
        absent = peers.not_measured(scenario.name, result["skipped"])
        lines.append(markdown(summary, scenario, load_note(settings, scenario), absent))
        if figures is not None:
            lines += [f"![{scenario.name}]({figures}/{scenario.name}.png)", ""]
    if result["skipped"]:
        lines += ["### Skipped", ""]
        lines += [f"- {s['scenario']} / {s['target']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def plot_all(result: Result, folder: Path, log: Callable[[str], None]) -> None:
    """Write ``<scenario>.png`` for every scenario into ``folder``."""
    try:
        from benchmarks.plots import plot_scenario
    except ImportError as err:  # install.sh installs matplotlib; without it, tables only
        log(f"no plots: {err}")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for summary in summaries(result):
        scenario = by_name(summary["scenario"])
        title = f"{scenario.name}: {scenario.description}"
        plot_scenario(summary, title, folder / f"{scenario.name}.png")


def write(result: Result, outdir: Path, plots: bool, log: Callable[[str], None]) -> str:
    """Write ``results.json``, ``table.md`` and the plots into ``outdir``; return the Markdown."""
    text = render(result)
    (outdir / "table.md").write_text(text)
    data = {**result, "summaries": [to_json(s) for s in summaries(result)]}
    (outdir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    if plots:
        plot_all(result, outdir, log)
    return text


RESULTS_INTRO = """# Benchmark results

The latest full run on the project's machine (2 cores, shared by the load generator and the
server), written by `python -m benchmarks publish benchmarks/results/<run>` after
`python -m benchmarks run`. How it measures: [README.md](README.md). Compare ratios within one
run; absolute numbers depend on the machine and on anything else running on it.

"""


FLOWS_INTRO = """### mpservice in process: `python -m benchmarks.flows`

mpservice's `mpserver` is a library for a Python process, not a server: the run above measures
it over HTTP through the recipe of its docs (`targets/mpservice_server.py`); this table measures
the same flows in process, mpservice 0.16.8 against `mosec.mpserver`, and the same flows on our
HTTP server, from one run of `benchmarks/flows.py`.

"""


def results_page(
    result: Result, figures: str, flows: Optional[str] = None, notes: Optional[str] = None
) -> str:
    """The content of ``benchmarks/RESULTS.md``: an introduction, the notes read from the run
    when given, the full report, then the in-process flows table of ``benchmarks.flows`` when
    given."""
    page = RESULTS_INTRO + (notes.rstrip() + "\n\n" if notes else "") + render(result, figures)
    if flows:
        page += "\n" + FLOWS_INTRO + flows
    return page
