"""Each folder one job, each piece small: what each package may import, and how long code gets.

The pipeline may use the warehouse, the reports, the server's pure helpers and `common`; the
server, the warehouse, the reports, the monitoring and `common` must never need the pipeline, so
each can be installed, tested and read without it. Checked on the syntax tree, function-level
imports included. No module is over 400 lines and no function over 80: a longer one has more
than one job and is split.
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
    "reports": {"pipelines"},
    "monitoring": {"pipelines"},
    "common": {"pipelines", "serving", "warehouse", "modules", "reports", "monitoring"},
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Not the project's code: environments, caches, run outputs.
NOT_PROJECT = {".venv", ".git", "runs", "data", "serving_model", "node_modules", "build", "dist"}


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


def test_no_file_of_the_packages_below_names_the_pipelines_folder():
    """Files read by path (the SQL, the schema) belong to the folder that reads them."""
    for package in sorted(FORBIDDEN):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            strings = [n.value for n in ast.walk(tree)
                       if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            assert not [s for s in strings if s == "pipelines"], path


def project_files(root: pathlib.Path = ROOT) -> list:
    """Every .py file of the project, outside environments, caches and run outputs."""
    return sorted(path for path in root.rglob("*.py")
                  if not any(part in NOT_PROJECT or part.startswith(".")
                             for part in path.relative_to(root).parts[:-1]))


def too_long(root: pathlib.Path = ROOT) -> dict:
    """'file' or 'file:function' -> its length in lines, for everything over the limits."""
    found = {}
    for path in project_files(root):
        name = str(path.relative_to(root))
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text, name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found[f"{name}:{node.name}"] = length
    return found


def test_no_module_over_400_lines_and_no_function_over_80():
    found = too_long()
    assert len(project_files()) > 100  # the walk saw the project, not an empty directory
    assert found == {}


def test_the_length_check_sees_long_modules_and_functions(tmp_path):
    """The checker itself: a 401-line module and an 81-line function are reported, a 400-line
    module and an 80-line function are not, and a virtual environment is never read."""
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (tmp_path / "long.py").write_text("def f():\n" + body + "\n" * 321)
    (tmp_path / "fits.py").write_text("def g():\n" + body[:body.rindex("\n")] + "\n" * 321)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "library.py").write_text("\n" * 500)
    assert too_long(tmp_path) == {"long.py": 401, "long.py:f": 81}
