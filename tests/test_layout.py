"""Each folder one job: what the server, the warehouse tools and the shared package may import.

The pipeline may use the warehouse, the server's pure helpers and `common`; the server, the
warehouse and `common` must never need the pipeline, so each can be installed, tested and read
without it. Checked on the syntax tree, function-level imports included.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Package -> project packages it must not import.
FORBIDDEN = {
    "serving": {"pipelines"},
    "warehouse": {"pipelines", "serving"},
    "common": {"pipelines", "serving", "warehouse", "modules", "reports"},
}


def imported_tops(path: pathlib.Path) -> set:
    """The top-level package of every absolute import in a file."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_packages_above_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_tops(f) & FORBIDDEN[package])
                 for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_no_file_of_serving_or_warehouse_names_the_pipelines_folder():
    """Files read by path (the SQL) belong to the folder that reads them."""
    for package in ("serving", "warehouse"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            strings = [n.value for n in ast.walk(tree)
                       if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            assert not [s for s in strings if s == "pipelines"], path
