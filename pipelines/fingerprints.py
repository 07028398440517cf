"""Fingerprints of the code a component runs and the files it reads, for TFX's cache key.

TFX 1.16 keys its cache (`tfx.orchestration.portable.cache_utils.get_cache_context`) on the
pipeline, the node, the executor spec (a class *name*), the input artifacts and the execution
properties, plus the content of a `module_file=`. Code loaded by dotted name (`run_fn=`,
`preprocessing_fn=`, the Evaluator's `module_path=`), the project's own executors, and files
read by path (the curated schema) are in none of these: after an edit, a run reused the outputs
of the old code. `stamp` gives every component one more string execution property,
FINGERPRINT_PROPERTY: a hash of the project modules it runs and of the files it reads.
Execution properties are part of the cache key on every orchestrator, and ML Metadata records
them with each execution.

The modules are found by following imports from the component's entry points (its class,
executor and driver, and every project module its configuration names), so the set cannot go
stale as the code changes. Python files are hashed by their syntax tree: a comment or layout
edit is not a new version of the code.

The versions of the libraries that do a component's work (TFX, TensorFlow, Beam, ...) are in
every fingerprint too: a new lock is new code, though none of the project's files changed.

`image_tag` is the same idea for the Google Cloud image: a hash of every file the Dockerfile
copies into it.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import pathlib
import re
import shlex
from typing import (TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Tuple, Union)

if TYPE_CHECKING:
    from tfx.dsl.components.base.base_component import BaseComponent

from pipelines.config import PROJECT_ROOT

# The execution property that carries the fingerprint (a name no TFX component uses).
FINGERPRINT_PROPERTY = "source_fingerprint"
DOCKERFILE = "Dockerfile"
# Files in the image's folders that are not the project (the .dockerignore leaves them out).
# The libraries whose code runs inside the components (their versions are part of every key).
LIBRARIES = ("tfx", "tfx-bsl", "tensorflow", "tf-keras", "tensorflow-transform",
             "tensorflow-data-validation", "tensorflow-model-analysis", "apache-beam",
             "keras-tuner", "duckdb", "sqlglot", "pyfarmhash")
_NOT_SOURCE_DIRS = {"__pycache__"}
_NOT_SOURCE_SUFFIXES = (".pyc", ".egg-info")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
PathLike = Union[str, pathlib.Path]
_Imports = Tuple[Union[ast.Import, ast.ImportFrom], ...]


@dataclasses.dataclass(frozen=True)
class _Parsed:
    """What fingerprints read of a Python file's syntax tree."""

    code_hash: bytes
    imports: _Imports


# Keyed by the file's bytes (their hash): an edited file is parsed again, an unchanged one not
# for every component of every pipeline built in a process (the tests build dozens).
_PARSED: Dict[bytes, _Parsed] = {}


def _parsed(source: bytes, filename: str) -> _Parsed:
    key = hashlib.sha256(source).digest()
    if key not in _PARSED:
        tree = ast.parse(source, filename=filename)
        _PARSED[key] = _Parsed(
            hashlib.sha256(ast.dump(tree).encode()).digest(),
            tuple(n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))))
    return _PARSED[key]


class ProjectModules:
    """The project's modules, as files under `root`, and what each imports of them."""

    def __init__(self, root: pathlib.Path = PROJECT_ROOT) -> None:
        self.root = pathlib.Path(root)
        self._imports: Dict[str, Set[str]] = {}
        self._files: Dict[str, Optional[pathlib.Path]] = {}
        self._parsed: Dict[pathlib.Path, _Parsed] = {}

    def file(self, name: str) -> Optional[pathlib.Path]:
        """The project's file of module `name`, or None for a module from elsewhere."""
        if name not in self._files:
            self._files[name] = self._find(name)
        return self._files[name]

    def _find(self, name: str) -> Optional[pathlib.Path]:
        parts = name.split(".")
        if not all(part.isidentifier() for part in parts):
            return None
        top = self.root / parts[0]
        if not ((top / "__init__.py").is_file() or top.with_suffix(".py").is_file()):
            return None
        base = self.root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def imports(self, name: str) -> Set[str]:
        """Project modules `name` imports anywhere in its file (function-level imports too),
        with the packages whose __init__ each import runs."""
        if name not in self._imports:
            path = self.file(name)
            found: Set[str] = set()
            if path is not None:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for node in self.parsed(path).imports:
                    found.update(self._imported_names(node, package))
            self._imports[name] = {m for m in found if self.file(m) is not None}
        return self._imports[name]

    def parsed(self, path: pathlib.Path) -> _Parsed:
        """The file's syntax tree as fingerprints read it, as the file is now."""
        if path not in self._parsed:
            self._parsed[path] = _parsed(path.read_bytes(), str(path))
        return self._parsed[path]

    def code_hash(self, path: pathlib.Path) -> bytes:
        """A hash of the file's syntax tree: comments and layout do not change it."""
        return self.parsed(path).code_hash

    @staticmethod
    def _imported_names(node: ast.AST, package: str) -> List[str]:
        if isinstance(node, ast.Import):
            return [name for alias in node.names for name in _with_parents(alias.name)]
        if not isinstance(node, ast.ImportFrom):
            return []
        base = node.module or ""
        if node.level:
            anchor = package.split(".") if package else []
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        if not base:
            return []
        # `from a import b`: b is a submodule or a name defined in a (then it has no file).
        return [*_with_parents(base), *(f"{base}.{alias.name}" for alias in node.names)]

    def closure(self, entry_points: Iterable[str]) -> List[pathlib.Path]:
        """The files of the entry modules and of every project module they import, in turn."""
        seen: Set[str] = set()
        pending = [name for entry in entry_points for name in _with_parents(entry)
                   if self.file(name) is not None]
        while pending:
            name = pending.pop()
            if name not in seen:
                seen.add(name)
                pending.extend(self.imports(name) - seen)
        return sorted({self.file(name) for name in seen})  # type: ignore[type-var]

    def named_in(self, text: str) -> Set[str]:
        """Project modules a configuration names by a dotted name ('modules.model.run_fn')."""
        names = set()
        for match in _DOTTED_NAME.findall(text):
            parts = match.split(".")
            for end in range(len(parts), 0, -1):
                if self.file(".".join(parts[:end])) is not None:
                    names.add(".".join(parts[:end]))
                    break
        return names


def _with_parents(name: str) -> List[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']: importing a module runs its packages' __init__."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def entry_points(component: "BaseComponent", modules: ProjectModules) -> Set[str]:
    """The project modules a component starts from: its class, executor and driver, and the
    modules its execution properties name (run_fn, preprocessing_fn, module_path, the metric
    modules inside eval_config, ...)."""
    classes = [type(component), getattr(component.executor_spec, "executor_class", None),
               getattr(component, "driver_class", None)]
    names = {c.__module__ for c in classes if c is not None}
    for key, value in component.exec_properties.items():
        if key != FINGERPRINT_PROPERTY and value is not None:
            names |= modules.named_in(str(value))
    module_file = component.exec_properties.get("module_file")
    if isinstance(module_file, str) and module_file:
        # TFX hashes a module file itself, but not the project modules it imports.
        path = pathlib.Path(module_file).resolve()
        if path.is_relative_to(modules.root.resolve()):
            names.add(".".join(path.relative_to(modules.root.resolve()).with_suffix("").parts))
    return names


def library_versions() -> List[str]:
    """`name==version` of each installed library in LIBRARIES (absent ones are left out)."""
    from importlib import metadata

    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return versions


def source_digest(code: Sequence[pathlib.Path], files: Sequence[PathLike],
                  modules: ProjectModules) -> str:
    """One hash of the code (by syntax tree), the files (by bytes) and the libraries' versions,
    independent of where the checkout lives."""
    digest = hashlib.sha256()
    for library in library_versions():
        digest.update(library.encode() + b"\0")
    for path in code:
        digest.update(path.relative_to(modules.root).as_posix().encode() + b"\0")
        digest.update(modules.code_hash(path))
    for path in files:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} (read by a pipeline component) does not exist")
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def component_fingerprint(component: "BaseComponent", reads: Sequence[PathLike] = (),
                          modules: Optional[ProjectModules] = None) -> str:
    """The hash of the project code `component` runs and of the files in `reads`."""
    modules = modules or ProjectModules()
    return source_digest(modules.closure(entry_points(component, modules)), reads, modules)


def stamp(components: Iterable[object], reads: Mapping[str, Sequence[PathLike]] = {},  # noqa: B006
          root: pathlib.Path = PROJECT_ROOT) -> None:
    """Puts each component's fingerprint among its execution properties (so in its cache key).

    `reads` maps a component id to the files it reads (the schema, the query). Resolvers and
    importers are not components and have no cache.
    """
    from tfx.dsl.components.base.base_component import BaseComponent

    modules = ProjectModules(root)
    for component in components:
        if isinstance(component, BaseComponent):
            component.exec_properties[FINGERPRINT_PROPERTY] = component_fingerprint(
                component, reads.get(component.id, ()), modules)


def runtime_path(path: PathLike, project_dir: Optional[str],
                 root: pathlib.Path = PROJECT_ROOT) -> str:
    """Where a project file is read when the components run from `project_dir` (the image's
    copy of the project on Google Cloud); None: this checkout."""
    if project_dir is None:
        return str(path)
    resolved = pathlib.Path(path).resolve()
    if not resolved.is_relative_to(pathlib.Path(root).resolve()):
        raise ValueError(f"{path} is outside the project ({root}), so it is not in the image")
    relative = resolved.relative_to(pathlib.Path(root).resolve()).as_posix()
    return str(pathlib.PurePosixPath(project_dir) / relative)


def image_files(root: pathlib.Path = PROJECT_ROOT) -> List[pathlib.Path]:
    """The Dockerfile and every file its COPY instructions put into the image."""
    root = pathlib.Path(root)
    dockerfile = root / DOCKERFILE
    text = dockerfile.read_text().replace("\\\n", " ")
    files = {dockerfile}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() != "COPY":
            continue
        sources = [w for w in words[1:] if not w.startswith("--")][:-1]
        for source in sources:
            path = root / source
            if not path.exists():
                raise FileNotFoundError(f"{DOCKERFILE} copies {source}, which does not exist")
            files.update([path] if path.is_file() else _source_files(path))
    return sorted(files)


def _source_files(folder: pathlib.Path) -> List[pathlib.Path]:
    return [p for p in folder.rglob("*") if p.is_file()
            and not _NOT_SOURCE_DIRS.intersection(p.relative_to(folder).parts)
            and not any(part.endswith(_NOT_SOURCE_SUFFIXES)
                        for part in p.relative_to(folder).parts)]


def image_tag(root: pathlib.Path = PROJECT_ROOT) -> str:
    """The image's tag: 'code-' and a hash of the bytes of every file the image is built from,
    so an image built from other code has another tag."""
    root = pathlib.Path(root)
    digest = hashlib.sha256()
    for path in image_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "code-" + digest.hexdigest()[:12]
