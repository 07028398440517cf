"""Which version is served: TF Serving's version policy, run by one background loader thread.

The newest version that loads is served. A version that fails to load (e.g. seen while `cp -r`
was still copying it) is retried `max_num_load_retries` times, `load_retry_interval_micros`
apart, as TF Serving does, then reported END with its error. Loading, warm-up and the old
version's teardown all happen on the loader thread, paced while a version serves so requests
keep the GIL and the cores: requests only ever read `current`, one reference replaced whole,
and a replaced version is released once the requests holding it are done. A served version deleted from disk is replaced by the newest remaining loadable one, or
unloaded (END) when there is none, so the server never keeps answering from a version that no
longer exists.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import sys
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from common import gc_freeze

from serving.model_store import (AVAILABLE, END, LOADING, ServedModel, VersionStatus,
                                 error_code, list_version_dirs, load_version)

LOGGER = logging.getLogger("babyweight.serving")

# While a version loads or is torn down, the loader thread gives the GIL back this often
# (seconds), so the event loop waits less for it between requests; Python's default is 5 ms.
_LOADER_SWITCH_INTERVAL = 0.0005
# ... and, while a version serves, runs at most _BURST_S at a time, then sleeps _PAUSE_S: a
# quarter of one core, so requests keep the GIL and the cores (benchmarks/serving.py).
_BURST_S, _PAUSE_S = 0.001, 0.003


@contextlib.contextmanager
def _yielding_gil(throttle: bool) -> Iterator[None]:
    """Lowers the thread switch interval (process-wide) and, if `throttle`, paces this thread.

    The pacing is a profile hook on this thread only: at a Python or C function call after
    more than _BURST_S of work it sleeps _PAUSE_S, releasing the GIL. Loading takes longer
    that way, which nobody waits for while the old version serves.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _LOADER_SWITCH_INTERVAL))
    clock, sleep = time.perf_counter, time.sleep
    resumed = clock()

    def pace(*_: object) -> None:
        nonlocal resumed
        if clock() - resumed > _BURST_S:
            sleep(_PAUSE_S)
            resumed = clock()

    if throttle:
        sys.setprofile(pace)
    try:
        yield
    finally:
        if throttle:
            sys.setprofile(None)
        sys.setswitchinterval(interval)


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


class ModelStore:
    """The served version of one model, and what happened to the others.

    `refresh()` runs on the loader thread (one at a time); `current` and `statuses()` can be
    read from anywhere.
    """

    def __init__(self, model_dir: str, retry: RetryPolicy = RetryPolicy(),
                 load: Callable[[int, str], ServedModel] = load_version,
                 list_dirs: Callable[[str], Tuple[Dict[int, str], List[str]]] = list_version_dirs,
                 clock: Callable[[], float] = time.monotonic, manage_heap: bool = True) -> None:
        self.model_dir = model_dir
        self.retry = retry
        self.current: Optional[ServedModel] = None
        self.ever_served = False
        self.polls = 0  # refreshes finished: /healthz shows the loader thread is alive
        self._load, self._list_dirs, self._clock = load, list_dirs, clock
        self._manage_heap = manage_heap
        self._heap_frozen = False
        self._failures: Dict[int, _Failure] = {}
        self._ended: Dict[int, VersionStatus] = {}
        self._loading: Optional[int] = None
        self._retiring: List[ServedModel] = []
        self._ignored_names: Set[str] = set()
        self._warned_empty = False
        self._lock = threading.Lock()

    # -- the loader thread's side ---------------------------------------------------------------

    def refresh(self) -> Optional[int]:
        """Serves the newest loadable version; returns it if the served version changed."""
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
            current = self.current
            if not versions:
                self._warn_empty(current)
            else:
                self._warned_empty = False
            for version in self._candidates(versions, current):
                model = self._try_load(version, versions[version])
                if model is not None:
                    self._swap(model)
                    return version
            if current is not None and current.version not in versions:
                self._unload(current)
            return None

    def _candidates(self, versions: Dict[int, str], current: Optional[ServedModel]
                    ) -> List[int]:
        """Versions worth a load now, newest first: newer than the served one (if still on
        disk), and not waiting for a retry or given up on."""
        now = self._clock()
        floor = current.version if current is not None and current.version in versions else -1
        return sorted((v for v in versions if v > floor
                       and (v not in self._failures or self._failures[v].retry_at <= now)),
                      reverse=True)

    def _try_load(self, version: int, path: str) -> Optional[ServedModel]:
        self._loading = version
        try:
            with _yielding_gil(throttle=self.current is not None):
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
        message = f"{type(error).__name__}: {error}".strip()
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

    def _swap(self, model: ServedModel) -> None:
        old = self.current
        self.current = model  # the one write requests see: a reference, replaced whole
        self.ever_served = True
        self._ended.pop(model.version, None)
        if old is not None:
            self._ended[old.version] = VersionStatus(old.version, END)
            self._retiring.append(old)
        LOGGER.info("Now serving version %d%s.", model.version,
                    f" (was {old.version})" if old else "")

    def _unload(self, current: ServedModel) -> None:
        self.current = None
        self._ended[current.version] = VersionStatus(current.version, END)
        self._retiring.append(current)
        LOGGER.warning("Version %d was deleted from %s and no other version loads: unloaded; "
                       "requests are answered 404 until a version is pushed.", current.version,
                       self.model_dir)

    def release_retired(self) -> int:
        """Drops replaced versions no request uses any more; returns how many are left.

        The last reference to an old version is dropped here, on the loader thread, so its
        teardown (and the collection of its reference cycles) is not paid by a request.
        """
        idle = [m for m in self._retiring if m.in_flight == 0]
        if idle:
            self._retiring = [m for m in self._retiring if m.in_flight > 0]
            released = [m.version for m in idle]
            with _yielding_gil(throttle=self.current is not None):
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

    def acquire(self) -> Optional[ServedModel]:
        """The served version, counted as in use until `release` (so it is not torn down)."""
        model = self.current
        if model is not None:
            model.in_flight += 1
        return model

    @staticmethod
    def release(model: ServedModel) -> None:
        model.in_flight -= 1

    def statuses(self) -> List[VersionStatus]:
        """The served version first, then one being loaded, then the others, newest first."""
        current = self.current
        result = [VersionStatus(current.version, AVAILABLE)] if current else []
        loading = self._loading
        # dict() copies in one step under the GIL; the loader thread may change them meanwhile.
        failures, others = dict(self._failures), dict(self._ended)
        others.update((v, f.status) for v, f in failures.items())
        if loading is not None:
            others[loading] = VersionStatus(loading, LOADING)
        result += [others[v] for v in sorted(others, reverse=True)
                   if current is None or v != current.version]
        return result


class Loader:
    """The background thread that runs `store.refresh()` every `poll_seconds`."""

    def __init__(self, store: ModelStore, poll_seconds: float) -> None:
        self.store = store
        self.poll_seconds = max(0.01, poll_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_poll:
                try:
                    self.store.refresh()
                except Exception:  # noqa: BLE001 - a failed look (a flaky disk) must not stop
                    LOGGER.exception("Looking for new versions in %s failed",
                                     self.store.model_dir)
                next_poll = time.monotonic() + self.poll_seconds
            # Replaced versions are checked often: they are released soon after their last
            # request, not a poll later.
            pending = self.store.release_retired()
            self._stop.wait(0.02 if pending else min(self.poll_seconds, 0.5))
