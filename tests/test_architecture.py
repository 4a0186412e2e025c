"""The apps' dependencies point one way (docs/architecture.md), and nothing dodges that rule.

- The import-linter contracts of pyproject.toml hold: api > review > classifier > cases > audit >
  accounts, and training imports only the classifier's public functions.
- Every app of the project is in the layers contract (a new app without a place fails).
- No import inside a function reaches into another app: such an import hides a cycle that the
  contract, which sees it too, would otherwise report as a cycle at the module level.
"""
import ast
import tomllib
from pathlib import Path

from django.apps import apps
from django.conf import settings
from importlinter import cli

ROOT = Path(settings.BASE_DIR)
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LAYERS = next(c["layers"] for c in CONFIG["contracts"] if c["type"] == "layers")


def test_import_contracts_hold():
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml")) == cli.EXIT_STATUS_SUCCESS


def test_every_project_app_has_a_layer():
    project_apps = {a.name for a in apps.get_app_configs() if Path(a.path).parent == ROOT}
    assert project_apps == set(LAYERS)


def _function_local_imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    yield inner.lineno, inner.module
                elif isinstance(inner, ast.Import):
                    for alias in inner.names:
                        yield inner.lineno, alias.name


def test_no_function_local_import_crosses_an_app_boundary():
    crossings = []
    for app in LAYERS:
        for path in sorted((ROOT / app).rglob("*.py")):
            for line, module in _function_local_imports(path):
                target = module.split(".")[0]
                if target in LAYERS and target != app:
                    crossings.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not crossings, "function-local imports across apps (move the code to the app it belongs to):\n" + "\n".join(
        crossings
    )


def test_the_crossing_check_sees_a_crossing(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from cases.models import Sample\n    import review.services\n")
    assert list(_function_local_imports(module)) == [(2, "cases.models"), (3, "review.services")]
