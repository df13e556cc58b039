"""The layout's promises: arrows run one way, the serving path loads no torch, tools stay out of the product.

Imports are checked in a fresh interpreter each (``sys.modules`` of this test process already
holds everything the other tests imported).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVING = ("model.scorer", "service.api.app", "service.api.server", "service.api.http_protocol",
           "service.batch.job", "service.batch.rows", "service.batch.store", "service.batch.ray_engine",
           "service.store.sqlite_store", "service.store.redis_store", "service.store.export")


def _loaded_after(imports: str, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after running ``imports``."""
    code = f"import sys; {imports}; print(','.join(m for m in {watched!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return [m for m in res.stdout.strip().split(",") if m]


def test_serving_path_imports_no_torch() -> None:
    imports = "import " + ", ".join(("cli", *SERVING))
    assert _loaded_after(imports, ("torch", "transformers", "datasets", "sklearn")) == []


def test_service_api_does_not_import_training() -> None:
    assert _loaded_after("import service.api", ("training",)) == []
    everything = "import " + ", ".join(SERVING[1:])  # every serving module, not only the package
    assert _loaded_after(everything, ("training", "tools", "cli")) == []


def test_building_the_cli_parser_loads_no_onnxruntime() -> None:
    assert _loaded_after("import cli; cli.build_parser()", ("onnxruntime", "torch", "pyarrow", "litestar")) == []


def test_the_contract_depends_on_neither_surface() -> None:
    """service.contract is what api and batch share: it may not import either (or a web/file framework)."""
    for path in sorted((ROOT / "service" / "contract").glob("*.py")):
        imports = re.findall(r"^\s*(?:from|import) (\S+)", path.read_text(), re.M)
        bad = [m for m in imports if m.startswith(("service.api", "service.batch", "service.store", "training",
                                                   "tools", "litestar", "uvicorn", "pyarrow", "ray"))]
        assert bad == [], (path.name, bad)


def test_the_store_knows_neither_surface_nor_the_model() -> None:
    """service.store keeps hashes and feedback: no model, no web or batch framework."""
    for path in sorted((ROOT / "service" / "store").glob("*.py")):
        imports = re.findall(r"^\s*(?:from|import) (\S+)", path.read_text(), re.M)
        bad = [m for m in imports if m.startswith(("model", "service.api", "service.batch", "training", "tools",
                                                   "litestar", "onnxruntime", "pyarrow", "ray"))]
        assert bad == [], (path.name, bad)


def test_core_install_does_not_pull_psutil_and_ships_no_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    core = [re.split(r"[<>=!\[; ]", dep, maxsplit=1)[0].lower() for dep in project["project"]["dependencies"]]
    assert "psutil" not in core and "httpx" not in core and "torch" not in core, core
    extras = project["project"]["optional-dependencies"]
    assert any(dep.startswith("psutil") for dep in extras["bench"])
    assert "serve" not in extras  # the empty extra is gone
    setup = project["tool"]["setuptools"]
    assert not any(p == "tools" or p.startswith(("tools.", "tests")) for p in setup["packages"])
    assert setup["py-modules"] == ["cli"] and project["project"]["scripts"]["complaint-triage"] == "cli:main"


def test_no_bench_or_soak_module_in_service() -> None:
    names = [p.relative_to(ROOT).as_posix() for p in (ROOT / "service").rglob("*.py")]
    assert not [n for n in names if re.search(r"(bench|soak)", Path(n).name)], names


@pytest.mark.parametrize("package", ["service", "service/contract", "service/api", "service/batch", "service/store",
                                     "tools"])
def test_every_package_says_what_it_holds_and_may_import(package: str) -> None:
    doc = (ROOT / package / "__init__.py").read_text()
    assert doc.startswith('"""') and ("import" in doc), package
