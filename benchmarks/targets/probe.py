"""Print, as JSON, what this interpreter offers the benchmark: versions and mosec's mixins.

Run by the harness with each target interpreter (and the same environment the server gets), from
the ``targets`` directory so that the repository itself is never on ``sys.path`` by accident.
"""

import importlib
import importlib.metadata
import json
import platform
import sys

# Modules whose distribution on PyPI has another name.
DISTRIBUTIONS = {"pytriton": "nvidia-pytriton"}
STACKS = ("mosec", "numpy", "numbin", "redis", "litserve", "msgpack")
STACKS += ("ray", "pytriton", "bentoml", "mpservice")


def _version(module_name):
    """The module's version, or ``None`` when it does not import."""
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 (any import failure means "absent")
        return None
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(DISTRIBUTIONS.get(module_name, module_name))
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


def main():
    """Collect and print the facts."""
    facts = {"python": platform.python_version(), "executable": sys.executable}
    for name in STACKS:
        facts[name] = _version(name)
    if facts["mosec"] is not None:
        import mosec

        facts["mosec_path"] = str(getattr(mosec, "__file__", ""))
        try:
            engine = importlib.import_module("mosec._engine")
            facts["engine"] = str(engine.version()) if hasattr(engine, "version") else "present"
        except Exception as err:  # noqa: BLE001 (no extension: upstream, or ours not built yet)
            facts["engine"] = None
            facts["engine_error"] = f"{type(err).__name__}: {err}"
        try:
            mixin = importlib.import_module("mosec.mixin")
            facts["mixins"] = sorted(n for n in dir(mixin) if n.endswith("Mixin"))
        except Exception as err:  # noqa: BLE001
            facts["mixins"] = []
            facts["mixin_error"] = f"{type(err).__name__}: {err}"
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
