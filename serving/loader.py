"""The background thread that keeps a ModelStore up to date: new versions, a re-read config."""
from __future__ import annotations

import logging
import threading
import time
from typing import List, Optional, Tuple

from serving.model_config import ConfigWatcher, VersionPolicy
from serving.version_manager import ModelStore

LOGGER = logging.getLogger("babyweight.serving")


class Loader:
    """Runs `store.refresh()` every `poll_seconds`, and applies a changed model config file
    or a policy handed over by `apply` (gRPC's HandleReloadConfigRequest)."""

    def __init__(self, store: ModelStore, poll_seconds: float,
                 config: Optional[ConfigWatcher] = None) -> None:
        self.store = store
        self.poll_seconds = max(0.01, poll_seconds)
        self.config = config
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._handed: List[Tuple[VersionPolicy, threading.Event]] = []
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        for _, done in self._handed:  # handed over too late: their callers stop waiting
            done.set()

    def apply(self, policy: VersionPolicy, timeout: float) -> bool:
        """Makes `policy` the store's, and waits (up to `timeout`) for the refresh that
        loads what it asks for; False if that refresh did not end in time (or the loader
        stopped first)."""
        done = threading.Event()
        self._handed.append((policy, done))
        self._wake.set()
        return done.wait(timeout) and not self._stop.is_set()

    def _next_policy(self) -> Tuple[Optional[VersionPolicy], List[threading.Event]]:
        policy = self.config.poll() if self.config is not None else None
        waiting = []
        while self._handed:  # the last one handed over wins, as in TF Serving
            policy, done = self._handed.pop(0)
            waiting.append(done)
        return policy, waiting

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            self._wake.clear()  # before looking: a policy handed over later wakes the wait
            policy, waiting = self._next_policy()
            if policy is not None:
                self.store.set_policy(policy)
                next_poll = 0.0  # apply it now
            if time.monotonic() >= next_poll:
                try:
                    self.store.refresh()
                except Exception:  # noqa: BLE001 - a failed look (a flaky disk) must not stop
                    LOGGER.exception("Looking for new versions in %s failed",
                                     self.store.model_dir)
                next_poll = time.monotonic() + self.poll_seconds
            for done in waiting:
                done.set()
            # Replaced versions are checked often: they are released soon after their last
            # request, not a poll later.
            pending = self.store.release_retired()
            self._wake.wait(0.02 if pending else min(self.poll_seconds, 0.5))
