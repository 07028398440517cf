"""The background thread that keeps a ModelStore up to date: new versions, a re-read config."""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from serving.model_config import ConfigWatcher
from serving.version_manager import ModelStore

LOGGER = logging.getLogger("babyweight.serving")


class Loader:
    """Runs `store.refresh()` every `poll_seconds`, and applies a changed model config file."""

    def __init__(self, store: ModelStore, poll_seconds: float,
                 config: Optional[ConfigWatcher] = None) -> None:
        self.store = store
        self.poll_seconds = max(0.01, poll_seconds)
        self.config = config
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
            policy = self.config.poll() if self.config is not None else None
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
            # Replaced versions are checked often: they are released soon after their last
            # request, not a poll later.
            pending = self.store.release_retired()
            self._stop.wait(0.02 if pending else min(self.poll_seconds, 0.5))
