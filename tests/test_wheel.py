"""The built wheel, installed in a fresh virtual environment, runs real servers; the sdist builds.

The wheel is built as ``make build`` builds the editable install (same features, same cargo
profile), so it reuses the compiled engine and takes seconds; ``make wheel`` is the release
build of the same wheel. The servers run from scripts in a temporary folder with that
environment's interpreter, so the checkout's ``mosec/`` cannot be imported (checked).
The environment sees the system's site-packages for the dependencies (numpy and the rest), so
the test needs no network; that the wheel declares them is checked against pyproject.toml.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from server_util import EXAMPLES, REPO, Server, free_port

#: A build that reuses the compiled engine takes seconds; a cold one minutes.
BUILD_TIMEOUT_S = 900

ECHO = """
from mosec import Server, Worker


class Echo(Worker):
    def forward(self, data: dict) -> dict:
        return data


if __name__ == "__main__":
    server = Server()
    server.append_worker(Echo, num=2, max_batch_size=8, max_wait_time=10)
    server.run()
"""

WHERE = "import mosec, mosec._engine; print(mosec.__file__); print(mosec._engine.__file__)"


def build(*command: str, out: Path) -> Path:
    """Run a maturin build into ``out``; the one file it made."""
    subprocess.run(
        [sys.executable, "-m", "maturin", *command, "--out", str(out)],
        cwd=REPO,
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    (made,) = out.iterdir()
    return made


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("build", "--release", out=tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with the wheel installed; its interpreter."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True)
    python = root / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + ["--no-index", "--no-deps", str(wheel)],
        check=True,
    )
    return python


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The servers' scripts, outside the checkout."""
    folder = tmp_path_factory.mktemp("app")
    (folder / "echo.py").write_text(ECHO)
    for name in ("arena_pipeline.py", "tensor_stages.py"):
        shutil.copy(EXAMPLES / "shm_ipc" / name, folder / name)
    return folder


@pytest.fixture
def start(venv: Path, app: Path, tmp_path: Path) -> Iterator[object]:
    servers: list[Server] = []

    def run(script: str, *args: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"{script}-{port}.log"
        # No PYTHONPATH, no MOSEC_* and the app folder as cwd: only the wheel provides mosec.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and "MOSEC_" not in k}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(venv), script, "--address", "127.0.0.1", "--port", str(port), *args],
                cwd=app,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, port, log_path)
        servers.append(server)
        server.wait_ready()
        return server

    yield run
    for server in servers:
        server.close()


def test_the_wheel_is_installed_not_the_checkout(venv: Path, app: Path) -> None:
    found = subprocess.run(
        [str(venv), "-c", WHERE], cwd=app, capture_output=True, text=True, check=True
    ).stdout.split()
    site = venv.parent.parent / "lib"
    assert all(Path(path).is_relative_to(site) for path in found), found
    assert not any(Path(path).is_relative_to(REPO) for path in found), found


def test_the_wheel_declares_the_dependencies_and_the_engine(wheel: Path) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    required = set(re.findall(r"^Requires-Dist: ([^;\n]+)$", text, re.MULTILINE))
    assert set(project["dependencies"]) <= {req.replace(" ", "") for req in required}, text
    assert any(re.fullmatch(r"mosec/_engine\..*\.so", name) for name in names), names
    assert "mosec/py.typed" in names and "mosec/_engine.pyi" in names, names
    # One wheel for every CPython from 3.11: the stable ABI.
    assert wheel.name.startswith("mosec-") and "-cp311-abi3-" in wheel.name, wheel.name


def test_the_readme_echo_runs_from_the_wheel(start) -> None:  # type: ignore[no-untyped-def]
    server = start("echo.py")
    response = server.post(json={"hi": 1})
    assert response.status_code == 200 and response.json() == {"hi": 1}
    metrics = server.metrics()
    assert re.search(
        r'^mosec_service_throughput_total\{code="200",endpoint="/inference"\} 1', metrics, re.M
    ), metrics
    page = server.client.get("/openapi/swagger/")
    assert page.status_code == 200 and 'src="swagger-ui-bundle.js"' in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        got = server.client.get(f"/openapi/swagger/{asset}")
        assert got.status_code == 200 and len(got.content) > 1000, asset


def test_an_arena_pipeline_runs_from_the_wheel(start) -> None:  # type: ignore[no-untyped-def]
    server = start("arena_pipeline.py", "--shm-size", "64M")
    response = server.post(json={"size": 256, "seed": 7})
    assert response.status_code == 200, response.text
    assert response.json()["shape"] == [3, 256, 256]
    assert server.metric("mosec_service_shm_capacity_bytes") > 0, server.metrics()


def test_the_sdist_holds_what_a_build_needs(tmp_path: Path) -> None:
    sdist = build("sdist", out=tmp_path)
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "engine/Cargo.toml",
        "engine/src/lib.rs",
        "shm/src/lib.rs",
        "mosec/__init__.py",
        "mosec/py.typed",
    ):
        assert needed in names, sorted(names)
    assert not any(name.startswith("target/") or name.endswith(".so") for name in names)
