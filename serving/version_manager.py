"""Which versions serve: TF Serving's version policy and labels, run by one background thread.

Without a model config file the policy is TF Serving's default, latest 1: the newest version
that loads serves. A config file (serving/model_config.py) may ask for the latest N, all, or
specific versions, and put labels on them; requests with no version get the newest serving
one. A version that fails to load (e.g. seen while `cp -r` was still copying it) is retried
`max_num_load_retries` times, `load_retry_interval_micros` apart, as TF Serving does, then
reported END with its error; meanwhile latest N passes over it to the next older versions.
Loading, warm-up and teardown all happen on the loader thread, paced while a version serves
(serving/pacing.py), so requests keep the GIL and the cores: requests only ever read one
`Serving` snapshot (versions and labels, replaced whole in one write, so a label never
names a version that has just left it), and a version that leaves it is released once the
requests holding it are done. A version deleted from disk stops serving; when none is left
the model is unloaded (END), so the server never answers from a version that no longer exists.
A version that leaves the policy stays until one the policy wants serves (TF Serving's
availability-preserving policy).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import math
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

from common import gc_freeze

from serving.model_config import VersionPolicy
from serving.model_store import (AVAILABLE, END, LOADING, ServedModel, VersionStatus,
                                 error_code, list_version_dirs, load_failure,
                                 load_version)
from serving.pacing import DEFAULT_CPU_SHARE, yielding_gil as _yielding_gil

LOGGER = logging.getLogger("babyweight.serving")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """TF Serving's --max_num_load_retries and --load_retry_interval_micros."""

    max_retries: int = 5
    interval_s: float = 60.0


@dataclasses.dataclass
class _Failure:
    tries: int
    retry_at: float  # clock() time of the next try; inf once the retries are used up
    status: VersionStatus


@dataclasses.dataclass(frozen=True)
class Serving:
    """What requests read: the versions serving now, the newest of them, the labels."""

    versions: Mapping[int, ServedModel] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)
    latest: Optional[ServedModel] = dataclasses.field(init=False)  # what a request gets

    def __post_init__(self) -> None:
        newest = self.versions[max(self.versions)] if self.versions else None
        object.__setattr__(self, "latest", newest)


class ModelStore:
    """The serving versions of one model, and what happened to the others.

    `refresh()` and `set_policy()` run on the loader thread (one at a time); `serving`,
    `current` and `statuses()` can be read from anywhere.
    """

    def __init__(self, model_dir: str, retry: RetryPolicy = RetryPolicy(),
                 load: Callable[[int, str], ServedModel] = load_version,
                 list_dirs: Callable[[str], Tuple[Dict[int, str], List[str]]] = list_version_dirs,
                 clock: Callable[[], float] = time.monotonic, manage_heap: bool = True,
                 policy: VersionPolicy = VersionPolicy(), model_name: str = "",
                 load_cpu_share: float = DEFAULT_CPU_SHARE) -> None:
        self.model_dir = model_dir
        self.retry = retry
        self.policy = policy
        self.model_name = model_name
        self.serving = Serving()
        self.ever_served = False
        self.polls = 0  # refreshes finished: /healthz shows the loader thread is alive
        self._load, self._list_dirs, self._clock = load, list_dirs, clock
        self._manage_heap = manage_heap
        self._load_cpu_share = load_cpu_share  # the loader's pace while a version serves
        self._heap_frozen = False
        self._failures: Dict[int, _Failure] = {}
        self._ended: Dict[int, VersionStatus] = {}
        self._loading: Optional[int] = None
        self._retiring: List[ServedModel] = []
        self._ignored_names: Set[str] = set()
        self._warned_empty = False
        self._label_problem = ""
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()  # only ever held for a counter's update

    @property
    def label_problem(self) -> str:
        """Why the policy's labels are not applied (TF Serving's message), or ""."""
        return self._label_problem

    @property
    def current(self) -> Optional[ServedModel]:
        """The newest serving version (what a request without a version gets)."""
        return self.serving.latest

    # -- the loader thread's side ---------------------------------------------------------------

    def set_policy(self, policy: VersionPolicy) -> None:
        """A re-read config file's policy; the next refresh applies it."""
        with self._lock:
            self.policy = policy
            self._label_problem = ""

    def refresh(self) -> Optional[int]:
        """Loads what the policy wants; returns the newest serving version if it changed."""
        try:
            return self._refresh()
        finally:
            self.polls += 1

    def _refresh(self) -> Optional[int]:
        with self._lock:
            self._freeze_baseline()
            versions, ignored = self._list_dirs(self.model_dir)
            self._note_ignored(ignored)
            for gone in [v for v in self._failures if v not in versions]:
                del self._failures[gone]  # pushed again later: a new version, tried anew
            before = self.current
            if not versions:
                self._warn_empty(before)
            else:
                self._warned_empty = False
            tried: Set[int] = set()
            while True:
                aspired = self.policy.aspired(versions, self._waiting())
                todo = [v for v in aspired
                        if v not in self.serving.versions and v not in tried and self._due(v)]
                if not todo:
                    break
                version = max(todo)
                tried.add(version)
                model = self._try_load(version, versions[version])
                if model is not None:
                    self._publish({**self.serving.versions, version: model}, aspired, versions)
            self._publish(dict(self.serving.versions), aspired, versions, settled=True)
            after = self.current
            if after is not None and (before is None or after.version != before.version):
                return after.version
            return None

    def _waiting(self) -> Set[int]:
        now = self._clock()
        return {v for v, f in self._failures.items() if f.retry_at > now}

    def _due(self, version: int) -> bool:
        failure = self._failures.get(version)
        return failure is None or failure.retry_at <= self._clock()

    def _publish(self, loaded: Dict[int, ServedModel], aspired: Set[int],
                 on_disk: Mapping[int, str], settled: bool = False) -> None:
        """Serves the loaded versions the policy wants, with its labels, in one write;
        retires the others. `settled`: nothing is left to load, so a label problem is real.

        If none it wants serves yet, the newest loaded one still on disk keeps serving. A label
        that cannot move yet (its new version does not serve) keeps the old labels, and the
        versions they name stay loaded: a label never points at a version just unloaded.
        """
        keep = {v: m for v, m in loaded.items() if v in aspired}
        if not keep and aspired:
            still = [v for v in loaded if v in on_disk]
            if still:
                keep = {max(still): loaded[max(still)]}
        old = self.serving
        labels = self._labels(keep, settled)
        if labels is None:
            labels = dict(old.labels)
            keep.update({v: loaded[v] for v in labels.values() if v in loaded and v in on_disk})
        if keep.keys() == old.versions.keys() and labels == dict(old.labels):
            return
        self.serving = Serving(keep, labels)  # the one write requests see, replaced whole
        if labels != dict(old.labels):
            LOGGER.info("Version labels: %s.", labels or "none")
        if keep:
            self.ever_served = True
        for version in keep:
            self._ended.pop(version, None)
        for version, model in old.versions.items():
            if version not in keep:
                self._ended[version] = VersionStatus(version, END)
                self._retiring.append(model)
        if keep.keys() != old.versions.keys():
            self._log_switch(old, keep, on_disk)

    def _log_switch(self, old: Serving, keep: Mapping[int, ServedModel],
                    on_disk: Mapping[int, str]) -> None:
        was = old.latest
        if not keep:
            LOGGER.warning("Version %d was deleted from %s and no other version loads: "
                           "unloaded; requests are answered 404 until a version is pushed.",
                           was.version if was else -1, self.model_dir)
            return
        newest = max(keep)
        if was is None or was.version != newest:
            LOGGER.info("Now serving version %d%s.", newest, f" (was {was.version})" if was
                        else "")
        if len(keep) > 1 or len(old.versions) > 1:
            LOGGER.info("Serving versions %s (policy %s).", ", ".join(map(str, sorted(keep))),
                        self.policy.describe())

    def _labels(self, versions: Mapping[int, ServedModel],
                report: bool) -> Optional[Dict[str, int]]:
        """The policy's labels if each points at one of `versions` (TF Serving's rule), else
        None (the problem logged once if `report`: between two loads it may be solved next)."""
        wanted, current = dict(self.policy.label_map), self.serving.labels
        for label, version in sorted(wanted.items()):
            existing = current.get(label)
            allowed = self.policy.allow_unavailable_labels and existing in (None, version)
            if version not in versions and not allowed:
                problem = (f"Request to assign label to version {version} of model "
                           f"{self.model_name}, which is not currently available for "
                           f"inference (label {label!r})")
                if report and problem != self._label_problem:
                    self._label_problem = problem
                    LOGGER.error("%s; the labels stay %s until it is.", problem,
                                 dict(current) or "unset")
                return None
        self._label_problem = ""
        return wanted

    def _try_load(self, version: int, path: str) -> Optional[ServedModel]:
        self._loading = version
        try:
            with _yielding_gil(self.current is not None, self._load_cpu_share):
                model = self._load(version, path)
        except Exception as error:  # noqa: BLE001 - any broken version must not stop serving
            self._record_failure(version, path, error)
            return None
        finally:
            self._loading = None
        self._failures.pop(version, None)
        return model

    def _record_failure(self, version: int, path: str, error: BaseException) -> None:
        previous = self._failures.get(version)
        tries = (previous.tries if previous else 0) + 1
        message = load_failure(error)
        if tries > self.retry.max_retries:
            retry_at, state = math.inf, END
            plan = (f"giving up after {tries} tries (--max-num-load-retries "
                    f"{self.retry.max_retries}); push it again as a new version")
        else:
            retry_at, state = self._clock() + max(0.0, self.retry.interval_s), LOADING
            plan = (f"try {tries} of {self.retry.max_retries + 1}; retrying in "
                    f"{max(0.0, self.retry.interval_s):g} s (--load-retry-interval-micros)")
        status = VersionStatus(version, state, error_code(error), message[:2000])
        self._failures[version] = _Failure(tries, retry_at, status)
        LOGGER.error("Version %d at %s failed to load (%s). %s", version, path, plan,
                     message[:500])

    def release_retired(self) -> int:
        """Drops replaced versions no request uses any more; returns how many are left.

        The last reference to an old version is dropped here, on the loader thread, so its
        teardown (and the collection of its reference cycles) is not paid by a request.
        """
        idle = [m for m in self._retiring if m.in_flight == 0]
        if idle:
            self._retiring = [m for m in self._retiring if m.in_flight > 0]
            released = [m.version for m in idle]
            with _yielding_gil(self.current is not None, self._load_cpu_share):
                del idle  # the last references: the versions' teardown runs here
                if self._manage_heap:
                    gc.collect()
            for version in released:
                LOGGER.info("Released version %d.", version)
        return len(self._retiring)

    def _freeze_baseline(self) -> None:
        """Exempts what exists before the first version loads (TensorFlow itself) from the GC.

        A full collection scans every tracked object, and TensorFlow's import leaves several
        hundred thousand; frozen ones are skipped, so the collections that free a replaced
        version scan only the versions' own objects. Done once, at the first poll; no version
        is frozen, so each can still be collected once replaced.
        """
        if self._manage_heap and not self._heap_frozen:
            gc_freeze.refreeze()  # a pipeline run in the same process never thaws it
            self._heap_frozen = True

    def _note_ignored(self, names: List[str]) -> None:
        for name in names:
            if name not in self._ignored_names:
                self._ignored_names.add(name)
                LOGGER.warning("Ignoring %r in %s: a version directory's name is only ASCII "
                               "digits and at most %d.", name, self.model_dir, 2 ** 63 - 1)

    def _warn_empty(self, current: Optional[ServedModel]) -> None:
        if not self._warned_empty:
            LOGGER.warning("No model versions in %s%s.", self.model_dir,
                           f"; version {current.version} was deleted" if current else " yet")
            self._warned_empty = True

    # -- the request side -----------------------------------------------------------------------

    def acquire(self, version: Optional[int] = None,
                serving: Optional[Serving] = None) -> Optional[ServedModel]:
        """A serving version (the newest when `version` is None) of `serving` (a snapshot the
        caller read, e.g. to resolve a label; else the current one), counted as in use until
        `release` so it is not torn down; None when it does not serve."""
        serving = self.serving if serving is None else serving
        model = serving.latest if version is None else serving.versions.get(version)
        if model is not None:
            with self._count_lock:  # REST's loop and the gRPC threads both count
                model.in_flight += 1
        return model

    def release(self, model: ServedModel) -> None:
        with self._count_lock:
            model.in_flight -= 1

    def statuses(self) -> List[VersionStatus]:
        """The serving versions first (newest first), then one loading, then the others."""
        serving = self.serving.versions
        result = [VersionStatus(v, AVAILABLE) for v in sorted(serving, reverse=True)]
        loading = self._loading
        # dict() copies in one step under the GIL; the loader thread may change them meanwhile.
        failures, others = dict(self._failures), dict(self._ended)
        others.update((v, f.status) for v, f in failures.items())
        if loading is not None:
            others[loading] = VersionStatus(loading, LOADING)
        result += [others[v] for v in sorted(others, reverse=True) if v not in serving]
        return result

