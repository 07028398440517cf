"""Cache keys see code and files: each component's fingerprint, checked without running it
(tests/test_reruns_e2e.py runs the pipeline)."""
import pathlib
import shutil
import textwrap
from typing import Dict, List

import pytest

from pipelines import fingerprints, pipeline
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.config import PROJECT_ROOT
from pipelines.schema import SCHEMA_FILE
from tests.project_copy import tighten_mother_age
from tests.test_pipeline_definition import build as build_local


def write(root: pathlib.Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture()
def project(tmp_path: pathlib.Path) -> pathlib.Path:
    """A small project: pkg.a imports b relatively, b imports c inside a function, d is apart."""
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\nimport json\n",
        "pkg/b.py": "def f():\n    from pkg.c import VALUE\n    return VALUE\n",
        "pkg/c.py": "VALUE = 1  # the value\n",
        "pkg/d.py": "OTHER = 2\n",
        "other/__init__.py": "",
        "Dockerfile": "FROM base\nCOPY setup.py ./\nCOPY pkg/ pkg/\n",
        "setup.py": "# setup\n",
    })
    return tmp_path


def relative(root: pathlib.Path, paths: List[pathlib.Path]) -> List[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def digest_of(root: pathlib.Path, entry: str) -> str:
    modules = fingerprints.ProjectModules(root)
    return fingerprints.source_digest(modules.closure([entry]), [], modules)


def test_imports_are_followed_through_the_project_only(project):
    modules = fingerprints.ProjectModules(project)
    assert relative(project, modules.closure(["pkg.a"])) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py"]
    assert modules.named_in('{"fn": "pkg.b.f", "x": "json.dumps", "y": "pkg.nothing"}') == {
        "pkg.b", "pkg"}


def test_code_edits_change_the_digest_comments_and_other_modules_do_not(project):
    before = digest_of(project, "pkg.a")
    (project / "pkg/d.py").write_text("OTHER = 3\n")
    (project / "pkg/c.py").write_text("VALUE = 1  # another comment\n\n\n")
    assert digest_of(project, "pkg.a") == before
    (project / "pkg/c.py").write_text("VALUE = 2\n")
    assert digest_of(project, "pkg.a") != before


def test_another_library_version_changes_the_digest(project, monkeypatch):
    """A new lock is new code: the same project files under another TFX get another key."""
    from importlib import metadata

    before = digest_of(project, "pkg.a")
    assert "tfx==1.16.0" in fingerprints.library_versions()
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version",
                        lambda name: "1.17.0" if name == "tfx" else real_version(name))
    assert "tfx==1.17.0" in fingerprints.library_versions()
    assert digest_of(project, "pkg.a") != before


def test_the_digest_does_not_depend_on_where_the_checkout_lives(project, tmp_path_factory):
    moved = tmp_path_factory.mktemp("moved") / "project"
    shutil.copytree(project, moved)
    assert digest_of(moved, "pkg.a") == digest_of(project, "pkg.a")


def test_image_tag_covers_what_the_dockerfile_copies(project):
    assert relative(project, fingerprints.image_files(project)) == [
        "Dockerfile", "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py",
        "setup.py"]
    tag = fingerprints.image_tag(project)
    assert tag.startswith("code-") and tag != "code-latest"
    write(project, {"pkg/__pycache__/a.cpython-310.pyc": "x", "other/e.py": "E = 1\n"})
    assert fingerprints.image_tag(project) == tag, "not copied into the image"
    (project / "setup.py").write_text("# setup, edited\n")  # bytes, comments included
    assert fingerprints.image_tag(project) != tag
    (project / "Dockerfile").write_text("FROM base\nCOPY missing.txt ./\n")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        fingerprints.image_tag(project)


def build(tmp_path: pathlib.Path, schema_file: pathlib.Path = SCHEMA_FILE):
    return build_local(tmp_path, schema_file=schema_file, enable_cache=True)


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """The pipeline as the local runner builds it (only read: building stamps every
    component's fingerprint, which parses the project's modules)."""
    return build(tmp_path_factory.mktemp("default"))


def code_sets(definition) -> Dict[str, List[str]]:
    modules = fingerprints.ProjectModules(PROJECT_ROOT)
    return {c.id: relative(PROJECT_ROOT, modules.closure(fingerprints.entry_points(c, modules)))
            for c in definition.components if c.id != "latest_blessed_model_resolver"}


def test_each_component_runs_the_project_code_its_entry_points_import(default):
    code = code_sets(default)
    # Loaded by dotted name: run_fn, preprocessing_fn, the Evaluator's module_path and the
    # metric classes its eval_config names.
    assert {"modules/model.py", "modules/features.py"} <= set(code["Trainer"])
    assert {"modules/preprocessing.py", "pipelines/speedups/batched_reads.py"} <= set(code["Transform"])
    assert {"pipelines/speedups/tfma_slicing.py", "pipelines/tfma_metrics.py",
            "pipelines/speedups/batched_reads.py"} <= set(code["Evaluator"])
    # The project's own executors.
    assert {"pipelines/components/duckdb_example_gen/executor.py",
            "warehouse/sql.py"} <= set(code["DuckDBExampleGen"])
    assert "pipelines/speedups/batched_reads.py" in code["StatisticsGen"]
    assert "pipelines/components/serving_pusher.py" in code["ServingPusher"]
    # The exploratory report's code, imported inside the component when it runs.
    assert {"reports/eda.py", "reports/eda_queries.py"} <= set(code["EdaReport"])
    # The model's code is the Trainer's alone among the stages before it.
    for stage in ("DuckDBExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "AnomalyGate", "Transform"):
        assert "modules/model.py" not in code[stage], stage


def test_every_cached_component_carries_its_fingerprint_into_the_compiled_pipeline(default):
    """The compiled IR's parameters are what TFX's cache key hashes."""
    from tfx.dsl.compiler import compiler

    compiled = compiler.Compiler().compile(default)
    stamped = {node.pipeline_node.node_info.id:
               node.pipeline_node.parameters.parameters[fingerprints.FINGERPRINT_PROPERTY]
               .field_value.string_value
               for node in compiled.nodes
               if fingerprints.FINGERPRINT_PROPERTY in node.pipeline_node.parameters.parameters}
    assert set(stamped) == {c.id for c in default.components} - {
        "latest_blessed_model_resolver"}
    assert all(len(value) == 16 for value in stamped.values()), stamped


def test_the_schema_s_content_is_in_import_schema_gen_s_key(tmp_path):
    def fingerprint(schema: pathlib.Path) -> Dict[str, str]:
        return {c.id: c.exec_properties.get(fingerprints.FINGERPRINT_PROPERTY)
                for c in build(tmp_path, schema).components}

    schema = tmp_path / "schema.pbtxt"
    shutil.copy(SCHEMA_FILE, schema)
    before = fingerprint(schema)
    tighten_mother_age(schema)
    after = fingerprint(schema)
    assert after["ImportSchemaGen"] != before["ImportSchemaGen"]
    assert {k: v for k, v in after.items() if k != "ImportSchemaGen"} == {
        k: v for k, v in before.items() if k != "ImportSchemaGen"}


def test_the_eda_template_s_content_is_in_eda_report_s_key(tmp_path, monkeypatch):
    """The page's template is read by path at run time: an edit to it is a new EdaReport."""
    import reports

    template = tmp_path / "eda.html.j2"
    shutil.copy(reports.EDA_TEMPLATE, template)
    monkeypatch.setattr(pipeline, "EDA_TEMPLATE", template)

    def fingerprint() -> Dict[str, str]:
        return {c.id: c.exec_properties.get(fingerprints.FINGERPRINT_PROPERTY)
                for c in build(tmp_path).components}

    before = fingerprint()
    template.write_text(template.read_text().replace("<h2>Summary</h2>", "<h2>Overview</h2>"))
    after = fingerprint()
    assert after["EdaReport"] != before["EdaReport"]
    assert {k: v for k, v in after.items() if k != "EdaReport"} == {
        k: v for k, v in before.items() if k != "EdaReport"}
