"""A monitoring run's verdict, made once from its findings, the traffic's schema breaks and the
records it knows it lacks, so the console, the page, summary.json, the reports index and the
exit code cannot disagree."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Dict, List, Optional, Sequence

EXIT_CROSSED = 2  # a distance above its threshold, or traffic that breaks the schema
# Records of the window are known to be missing: in files still open, or in files the server
# deleted (trimmed away) while monitoring read the log.
EXIT_INCOMPLETE = 3


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the window says: the distances above their thresholds and the schema breaks, each
    in words, and how many files still open, or trimmed away while read, may hold records the
    window lacks."""

    crossed: Sequence[str]
    schema_breaks: Sequence[str]
    open_files: int = 0
    trimmed_files: int = 0

    @classmethod
    def of(cls, findings: Sequence[Any], anomalies: Dict[str, str],
           open_files: int = 0, trimmed_files: int = 0) -> "Verdict":
        return cls([f.sentence() for f in findings if f.crossed],
                   [f"feature '{name}': {text}" for name, text in anomalies.items()],
                   open_files, trimmed_files)

    @property
    def incomplete(self) -> bool:
        """Records of the window are known to be missing (files open, or trimmed away)."""
        return bool(self.open_files or self.trimmed_files)

    @property
    def flagged(self) -> bool:
        """A threshold crossed or the schema broken: the traffic is not what was trained on."""
        return bool(self.crossed or self.schema_breaks)

    @property
    def headline(self) -> str:
        """The page's verdict in a few words."""
        parts = (["threshold crossed"] if self.crossed else []) + (
            ["breaks the schema"] if self.schema_breaks else [])
        return (", ".join(parts) or "clean") + (
            ", window incomplete" if self.incomplete else "")

    @property
    def label(self) -> str:
        """The reports index's verdict cell: how many of each kind, and records left out."""
        parts = ([f"{len(self.crossed):,} above threshold"] if self.crossed else []) + (
            [_count(len(self.schema_breaks), "schema break", "schema breaks")]
            if self.schema_breaks else [])
        causes = ([f"{_count(self.open_files, 'request-log file', 'request-log files')} "
                   "still open"] if self.open_files else []) + (
            [f"{_count(self.trimmed_files, 'request-log file', 'request-log files')} trimmed "
             "away while read"] if self.trimmed_files else [])
        return (", ".join(parts) or "clean") + (
            f"; window incomplete ({', '.join(causes)})" if causes else "")

    def exit_code(self, allow_open_files: bool = False,
                  allow_trimmed_files: bool = False) -> int:
        """3 when records are known to be missing from the window, unless each cause is
        accepted: its distances are not the whole window's; else 2 when flagged, else 0."""
        if ((self.open_files and not allow_open_files)
                or (self.trimmed_files and not allow_trimmed_files)):
            return EXIT_INCOMPLETE
        return EXIT_CROSSED if self.flagged else 0

    def summary(self) -> Dict[str, Any]:
        """summary.json's verdict fields ('crossed' holds both kinds, as it always has)."""
        return {"verdict": self.label, "flagged": self.flagged,
                "crossed": list(self.crossed) + [f"traffic {t}" for t in self.schema_breaks],
                "thresholds_crossed": list(self.crossed),
                "schema_breaks": list(self.schema_breaks)}


def index_cell(summary: Dict[str, Any]) -> Dict[str, Any]:
    """A summary.json's verdict for the reports index: its own, or for one written before it
    carried one, made from its 'crossed' (schema breaks were written there as "traffic
    feature '...'")."""
    if isinstance(summary.get("verdict"), str):
        return {"text": summary["verdict"], "bad": bool(
            summary.get("flagged") or summary.get("open_files")
            or summary.get("trimmed_files_in_window"))}
    crossed: List[str] = [str(c) for c in summary.get("crossed") or []]
    breaks = [c[len("traffic "):] for c in crossed if c.startswith("traffic feature '")]
    verdict = Verdict([c for c in crossed if not c.startswith("traffic feature '")], breaks,
                      int(summary.get("open_files") or 0),
                      int(summary.get("trimmed_files_in_window") or 0))
    return {"text": verdict.label, "bad": verdict.flagged or verdict.incomplete}


def unread_text(count: int) -> Optional[str]:
    """Why records may be missing from the window: files still open hold records from before
    its end, which no later window (starting at that end) would count either."""
    if not count:
        return None
    return (f"{count} request-log file{'s' if count > 1 else ''} still open (.partial) may hold "
            "records from before the window's end, which are not in this window: rerun once "
            "the server has completed them (--request-log-file-seconds) or pass an earlier --end")


def trimmed_text(trimmed: Sequence[pathlib.Path]) -> Optional[str]:
    """Why records are missing for good: files the server deleted while they were read, opened
    before the window's end (by their names), may have held records of it, which no rerun can
    read (nor know of: it lists the log anew)."""
    if not trimmed:
        return None
    many = len(trimmed) > 1
    return (f"{len(trimmed)} request-log file{'s' if many else ''} "
            f"({', '.join(p.name for p in trimmed)}) opened before the window's end "
            f"{'were' if many else 'was'} deleted by the server while being read (it deletes "
            "the oldest files to keep the log within --request-log-max-bytes): the records of "
            f"this window {'they' if many else 'it'} held are lost; give the log more room, or "
            "--allow-trimmed-files accepts the window without them")


def incomplete_text(open_files: int, trimmed: Sequence[pathlib.Path]) -> Optional[str]:
    """The page's and the console's one sentence on every cause of missing records."""
    return "; ".join(filter(None, [unread_text(open_files), trimmed_text(trimmed)])) or None


def refused_text(open_files: int, trimmed: Sequence[pathlib.Path], allow_open_files: bool,
                 allow_trimmed_files: bool) -> str:
    """The causes of an exit 3 the user did not accept, each with the flag that accepts it."""
    return "; ".join(f"{text}; {flag} accepts it" for text, flag, allowed in (
        (unread_text(open_files), "--allow-open-files", allow_open_files),
        (trimmed_text(trimmed), "--allow-trimmed-files", allow_trimmed_files))
        if text and not allowed)
