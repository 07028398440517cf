"""A monitoring run's verdict, made once from its findings, the traffic's schema breaks and the
records it knows it lacks, so the console, the page, summary.json, the reports index and the
exit code cannot disagree."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Sequence

EXIT_CROSSED = 2  # a distance above its threshold, or traffic that breaks the schema
EXIT_INCOMPLETE = 3  # records from before the window's end are in files still open


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the window says: the distances above their thresholds and the schema breaks, each
    in words, and how many files still open may hold records the window lacks."""

    crossed: Sequence[str]
    schema_breaks: Sequence[str]
    open_files: int = 0

    @classmethod
    def of(cls, findings: Sequence[Any], anomalies: Dict[str, str],
           open_files: int = 0) -> "Verdict":
        return cls([f.sentence() for f in findings if f.crossed],
                   [f"feature '{name}': {text}" for name, text in anomalies.items()],
                   open_files)

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
            ", window incomplete" if self.open_files else "")

    @property
    def label(self) -> str:
        """The reports index's verdict cell: how many of each kind, and records left out."""
        parts = ([f"{len(self.crossed):,} above threshold"] if self.crossed else []) + (
            [_count(len(self.schema_breaks), "schema break", "schema breaks")]
            if self.schema_breaks else [])
        files = _count(self.open_files, "request-log file", "request-log files")
        return (", ".join(parts) or "clean") + (
            f"; window incomplete ({files} still open)" if self.open_files else "")

    def exit_code(self, allow_open_files: bool = False) -> int:
        """3 when records are known to be missing from the window, unless accepted: its
        distances are not the whole window's; else 2 when flagged, else 0."""
        if self.open_files and not allow_open_files:
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
        return {"text": summary["verdict"],
                "bad": bool(summary.get("flagged") or summary.get("open_files"))}
    crossed: List[str] = [str(c) for c in summary.get("crossed") or []]
    breaks = [c[len("traffic "):] for c in crossed if c.startswith("traffic feature '")]
    verdict = Verdict([c for c in crossed if not c.startswith("traffic feature '")], breaks,
                      int(summary.get("open_files") or 0))
    return {"text": verdict.label, "bad": verdict.flagged or bool(verdict.open_files)}
