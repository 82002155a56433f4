"""Build ``fleetmeter-hwcheck.pyz``: the hardware check and only what it imports, as one zip application that
``python3`` runs on a GPU machine without network or virtual environment (``./dev hwcheck-bundle``)."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

#: fleetmeter's modules the check imports (the package's folders are links: the files are read through them).
MODULES = ("fleetmeter/__init__.py", "fleetmeter/collectors/__init__.py", "fleetmeter/collectors/readings.py",
           "fleetmeter/collectors/counters.py", "fleetmeter/collectors/backends/__init__.py",
           "fleetmeter/collectors/backends/base.py", "fleetmeter/collectors/backends/library_query.py",
           "fleetmeter/collectors/backends/nvml_style.py", "fleetmeter/collectors/backends/nvml.py",
           "fleetmeter/collectors/hwcheck/__init__.py", "fleetmeter/collectors/hwcheck/__main__.py",
           "fleetmeter/collectors/hwcheck/check.py", "fleetmeter/collectors/hwcheck/driver_tools.py",
           "fleetmeter/collectors/hwcheck/load.py")
#: Third-party code it carries: nvidia-ml-py's single module, structlog, and the typing_extensions structlog
#: needs on Python 3.10 (Ubuntu 22.04's, DGX OS 6's); all pure Python.
THIRD_PARTY = ("pynvml", "structlog", "typing_extensions")
ENTRY = """import sys
if sys.version_info < (3, 10):
    sys.exit("fleetmeter-hwcheck: needs Python 3.10 or later, this is " + sys.version.split()[0])
import runpy
runpy.run_module("fleetmeter.collectors.hwcheck", run_name="__main__")
"""


def _source_root() -> Path:
    import fleetmeter

    return Path(fleetmeter.__file__).resolve().parent.parent


def build(output: Path) -> Path:
    root = _source_root()
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__main__.py", ENTRY)
        for module in MODULES:
            archive.write(root / module, module)
        for name in THIRD_PARTY:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise SystemExit(f"{name} is not installed here: cannot bundle it")
            origin = Path(spec.origin)
            if origin.name == "__init__.py":
                for path in sorted(origin.parent.rglob("*.py")):
                    archive.write(path, f"{name}/{path.relative_to(origin.parent)}")
            else:
                archive.write(origin, origin.name)
    return output


if __name__ == "__main__":
    built = build(Path(sys.argv[1] if len(sys.argv) > 1 else "fleetmeter-hwcheck.pyz"))
    print(f"{built}: {built.stat().st_size / 1024:.0f} KiB; run it with python3 on the GPU machine")
