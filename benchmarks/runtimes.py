"""Runtimes: the interpreter each target runs under, and the virtual environments behind them.

Ours and upstream mosec are both imported as ``mosec``, so each lives in its own interpreter:

- ``ours``: the interpreter running the harness, with the repository root on ``PYTHONPATH`` (the
  extension is built in place by ``make build``, or installed by ``pip install .``).
- ``upstream``: mosec 0.9.8 from PyPI in ``benchmarks/.venv-upstream``.
- ``litserve``: LitServe from PyPI in ``benchmarks/.venv-litserve``.
- ``ray``, ``pytriton``, ``bentoml``, ``mpservice``: the peers, each pinned, from PyPI in
  ``benchmarks/.venv-<name>`` (mpservice's is shared with ``benchmarks/flows.py``).
- ``stub``: the harness's interpreter, for the standard-library test server.

The harness creates a missing environment on first use (``ensure``); ``python -m benchmarks setup``
does it ahead of time. A file in each environment records what was installed, so a changed
requirement list reinstalls and an unchanged one costs nothing.
"""

import json
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS_DIR = HERE / "targets"
MARKER = "bench-requirements.txt"


@dataclass(frozen=True)
class Runtime:
    """An interpreter for target scripts.

    Attributes:
        name: short name, the first half of target names (``ours-pickle``).
        venv: directory of its virtual environment under ``benchmarks/``; ``None`` to use the
            harness's own interpreter.
        requirements: what ``pip`` installs into that environment.
        repo_on_path: put the repository root on ``PYTHONPATH`` (our in-place build).
        label: how results name the software under test.
        package: the module that must import for its targets to run (its version is reported).
        extra_env: variables its processes get (the peers' telemetry off: nothing leaves here).
    """

    name: str
    venv: Optional[str]
    requirements: Tuple[str, ...]
    repo_on_path: bool
    label: str
    package: Optional[str] = None
    extra_env: Tuple[Tuple[str, str], ...] = ()

    @property
    def python(self) -> Path:
        """The interpreter's path."""
        if self.venv is None:
            return Path(sys.executable)
        return HERE / self.venv / "bin" / "python"

    def env(self) -> Dict[str, str]:
        """The environment for its processes: ours sees the repository, the others never do."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        env["PYTHONUNBUFFERED"] = "1"
        if self.repo_on_path:
            env["PYTHONPATH"] = str(REPO)
        env.update(self.extra_env)
        return env

    def installed(self) -> bool:
        """Whether the environment exists with exactly this requirement list."""
        if self.venv is None:
            return True
        marker = HERE / self.venv / MARKER
        return self.python.exists() and marker.exists() and marker.read_text() == self._marker()

    def ensure(self, log=print) -> None:
        """Create the virtual environment and install the requirements, unless already done.

        Raises:
            subprocess.CalledProcessError: pip failed (no network, unknown version ...).
        """
        if self.installed():
            return
        assert self.venv is not None
        root = HERE / self.venv
        log(f"installing {self.label} into {root.relative_to(REPO)} (once)")
        venv.EnvBuilder(with_pip=True, clear=root.exists()).create(root)
        pip = [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *self.requirements], check=True)
        (root / MARKER).write_text(self._marker())

    def probe(self) -> Dict[str, Any]:
        """Ask the interpreter what it has: versions, our engine, the ``mosec.mixin`` classes.

        Returns ``{"error": ...}`` when the interpreter is missing or cannot run the probe.
        """
        if not self.python.exists():
            return {"error": f"{self.python} does not exist"}
        script = str(TARGETS_DIR / "probe.py")
        proc = subprocess.run(
            [str(self.python), script],
            env=self.env(),
            cwd=str(TARGETS_DIR),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            return {"error": (proc.stderr or proc.stdout).strip()[-500:]}
        return json.loads(proc.stdout)

    def _marker(self) -> str:
        return "\n".join(self.requirements) + "\n"


RUNTIMES: Dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (
        Runtime(
            "ours", None, (), repo_on_path=True, label="this repository's mosec", package="mosec"
        ),
        Runtime(
            "upstream",
            ".venv-upstream",
            (
                *("mosec==0.9.8", "numpy", "numbin==0.5.1", "redis", "hiredis", "msgpack"),
                "msgspec",
                # The ocr scenario's pipeline (examples/ocr): its models ship in this wheel.
                *("rapidocr-onnxruntime==1.4.4", "pillow>=10.1"),
            ),
            repo_on_path=False,
            label="upstream mosec 0.9.8",
            package="mosec",
        ),
        Runtime(
            "litserve",
            ".venv-litserve",
            ("litserve==0.2.19", "numpy"),
            repo_on_path=False,
            label="LitServe 0.2.19",
            package="litserve",
        ),
        Runtime(
            "mpservice",
            ".venv-mpservice",
            ("mpservice==0.16.8", "numpy", "starlette"),  # starlette: mpservice.http's recipe
            repo_on_path=False,
            label="mpservice 0.16.8",
            package="mpservice",
        ),
        # The peers people weigh us against, each pinned and in its own environment.
        Runtime(
            "ray",
            ".venv-ray",
            ("ray[serve]==2.60.0", "numpy"),
            repo_on_path=False,
            label="Ray Serve 2.60.0",
            package="ray",
            extra_env=(("RAY_USAGE_STATS_ENABLED", "0"),),
        ),
        Runtime(
            "pytriton",
            ".venv-pytriton",
            ("nvidia-pytriton==0.7.0", "numpy"),
            repo_on_path=False,
            label="PyTriton 0.7.0",
            package="pytriton",
        ),
        Runtime(
            "bentoml",
            ".venv-bentoml",
            ("bentoml==1.4.40", "numpy"),
            repo_on_path=False,
            label="BentoML 1.4.40",
            package="bentoml",
            extra_env=(("BENTOML_DO_NOT_TRACK", "True"),),
        ),
        Runtime("stub", None, (), repo_on_path=False, label="standard-library stub server"),
    )
}
