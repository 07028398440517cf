"""TF Serving's model config file (`--model-config-file`): version policy and version labels.

The file is a `ModelServerConfig` in protobuf text format, parsed with the messages of
`tensorflow-serving-api`, so a file written for TF Serving works here unchanged (and the other
way round). This server serves one model: the file's single `config` names it (`name`) and
where its versions are (`base_path`). What it says:

  model_version_policy  latest { num_versions: N } (default: latest 1), all {},
                        specific { versions: ... }: which versions are loaded and serve
  version_labels        label -> version (e.g. stable, canary); a label may only point at a
                        version that is AVAILABLE, unless
                        --allow-version-labels-for-unavailable-models (TF Serving's rule)

With `--model-config-file-poll-wait-seconds` above 0 the file is read again that often; a
changed file that is wrong is logged once and the previous config stays in force.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable, Dict, FrozenSet, Iterable, Optional, Set, Tuple

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.settings import ModelConfig
from serving.versions import list_version_dirs

LOGGER = logging.getLogger("babyweight.serving")

LATEST, ALL, SPECIFIC = "latest", "all", "specific"


class ConfigError(ValueError):
    """A model config file this server cannot use; the message names the file and the cause."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions serve (TF Serving's ServableVersionPolicy) and the labels on them."""

    kind: str = LATEST
    num_versions: int = 1
    versions: FrozenSet[int] = frozenset()
    labels: Tuple[Tuple[str, int], ...] = ()
    allow_unavailable_labels: bool = False

    def aspired(self, on_disk: Iterable[int], waiting: Set[int]) -> Set[int]:
        """The versions that should serve, of those on disk.

        `waiting`: versions whose last load failed and that are not due for a retry; latest N
        passes over them to the next older ones (the newest version that loads serves).
        """
        if self.kind == ALL:
            return set(on_disk)
        if self.kind == SPECIFIC:
            return self.versions.intersection(on_disk)
        ready = sorted((v for v in on_disk if v not in waiting), reverse=True)
        return set(ready[:self.num_versions])

    @property
    def label_map(self) -> Dict[str, int]:
        return dict(self.labels)

    def describe(self) -> str:
        if self.kind == LATEST:
            return f"latest {self.num_versions}"
        if self.kind == SPECIFIC:
            return f"specific {', '.join(map(str, sorted(self.versions)))}"
        return "all"


@dataclasses.dataclass(frozen=True)
class ModelServerConfig:
    """The one model a config file describes."""

    name: str
    base_path: str
    policy: VersionPolicy


def parse(text: str, source: str, allow_unavailable_labels: bool = False) -> ModelServerConfig:
    """A ModelServerConfig text proto -> the model it serves; ConfigError names what is wrong."""
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as error:
        raise ConfigError(f"{source}: not a ModelServerConfig in text format: {error}") from None
    return from_proto(proto, source, allow_unavailable_labels)


def from_proto(proto: model_server_config_pb2.ModelServerConfig, source: str,
               allow_unavailable_labels: bool = False) -> ModelServerConfig:
    """A ModelServerConfig message (a file's, or gRPC's HandleReloadConfigRequest's) -> the
    model it serves; ConfigError names what is wrong."""
    if proto.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: needs a model_config_list (custom_model_config is not "
                          "supported)")
    configs = proto.model_config_list.config
    if len(configs) != 1:
        raise ConfigError(f"{source}: lists {len(configs)} models; this server serves exactly "
                          "one (one config { ... } in model_config_list)")
    config = configs[0]
    if not config.name:
        raise ConfigError(f"{source}: the model's config has no name")
    if not config.base_path:
        raise ConfigError(f"{source}: model {config.name!r} has no base_path")
    if config.model_platform not in ("", "tensorflow"):
        raise ConfigError(f"{source}: model {config.name!r} has model_platform "
                          f"{config.model_platform!r}; only 'tensorflow' is served")
    policy = _policy(config, source)
    labels = tuple(sorted(config.version_labels.items()))
    for label, version in labels:
        if not label or "/" in label or ":" in label:
            raise ConfigError(f"{source}: version label {label!r} cannot appear in a REST path")
        if version < 0:
            raise ConfigError(f"{source}: version label {label!r} points at version {version}")
    return ModelServerConfig(config.name, config.base_path, dataclasses.replace(
        policy, labels=labels, allow_unavailable_labels=allow_unavailable_labels))


def _policy(config: model_server_config_pb2.ModelConfig, source: str) -> VersionPolicy:
    choice = config.model_version_policy.WhichOneof("policy_choice")
    if choice is None:
        return VersionPolicy()
    if choice == "latest":
        count = config.model_version_policy.latest.num_versions  # uint32: never negative
        return VersionPolicy(LATEST, max(count, 1))  # TF Serving reads 0 as 1
    if choice == "specific":
        versions = frozenset(config.model_version_policy.specific.versions)
        if not versions:
            raise ConfigError(f"{source}: specific {{ }} lists no versions")
        return VersionPolicy(SPECIFIC, versions=versions)
    return VersionPolicy(ALL)


def read(path: str, allow_unavailable_labels: bool = False) -> ModelServerConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the model config file {path}: {error}") from None
    return parse(text, path, allow_unavailable_labels)


def check_labels(config: ModelServerConfig, on_disk: Iterable[int]) -> None:
    """At start: every label points at a version the policy will serve from what is on disk."""
    policy = config.policy
    if policy.allow_unavailable_labels:
        return
    aspired = policy.aspired(on_disk, set())
    for label, version in policy.labels:
        if version not in aspired:
            raise ConfigError(
                f"version label {label!r}: Request to assign label to version {version} of "
                f"model {config.name}, which is not currently available for inference (the "
                f"policy {policy.describe()} does not serve it from {config.base_path}; "
                "--allow-version-labels-for-unavailable-models allows it)")


def with_config_file(model: ModelConfig) -> Tuple[ModelConfig, Optional[ModelServerConfig]]:
    """`model` with --model-config-file's name and base_path, and the file's config (None
    without a file); ConfigError names what is wrong with the file. No TensorFlow needed for a
    local base_path: the server checks its file this way before it imports TensorFlow."""
    if not model.model_config_file:
        return model, None
    found = read(model.model_config_file, model.allow_version_labels_for_unavailable_models)
    check_labels(found, list_version_dirs(found.base_path)[0])
    return dataclasses.replace(model, model_name=found.name, model_dir=found.base_path), found


class ConfigWatcher:
    """Re-reads the file every `poll_seconds`; a changed, valid file is the new policy.

    A wrong file (or one that changes the model's name or base_path, which needs a restart)
    is logged once per content and the previous config stays in force.
    """

    def __init__(self, path: str, current: ModelServerConfig, poll_seconds: float,
                 clock: Callable[[], float]) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._current = current
        self._clock = clock
        self._next = clock() + poll_seconds
        self._seen = self._read_bytes()

    def _read_bytes(self) -> Optional[bytes]:
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def poll(self) -> Optional[VersionPolicy]:
        """The new policy when the file changed to a valid one since the last look, else None."""
        if self.poll_seconds <= 0 or self._clock() < self._next:
            return None
        self._next = self._clock() + self.poll_seconds
        content = self._read_bytes()
        if content == self._seen:
            return None
        self._seen = content
        try:
            if content is None:
                raise ConfigError(f"cannot read the model config file {self.path}")
            new = parse(content.decode("utf-8", errors="replace"), self.path,
                        self._current.policy.allow_unavailable_labels)
            if (new.name, os.path.abspath(new.base_path)) != (
                    self._current.name, os.path.abspath(self._current.base_path)):
                raise ConfigError(
                    f"{self.path}: changes the model's name or base_path (to {new.name!r}, "
                    f"{new.base_path!r}); that needs a restart of the server")
        except ConfigError as error:
            LOGGER.error("Model config file not applied, the previous config stays: %s", error)
            return None
        self._current = new
        LOGGER.info("Model config file %s read again: versions %s, labels %s", self.path,
                    new.policy.describe(), new.policy.label_map or "none")
        return new.policy
