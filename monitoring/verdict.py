"""A monitoring run's verdict, made once from its findings and the traffic's schema breaks, so
the console, the page, summary.json, the reports index and the exit code cannot disagree."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Sequence

EXIT_CROSSED = 2  # a distance above its threshold, or traffic that breaks the schema


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the window says: the distances above their thresholds and the schema breaks, each
    in words."""

    crossed: Sequence[str]
    schema_breaks: Sequence[str]

    @classmethod
    def of(cls, findings: Sequence[Any], anomalies: Dict[str, str]) -> "Verdict":
        return cls([f.sentence() for f in findings if f.crossed],
                   [f"feature '{name}': {text}" for name, text in anomalies.items()])

    @property
    def flagged(self) -> bool:
        """A threshold crossed or the schema broken: the traffic is not what was trained on."""
        return bool(self.crossed or self.schema_breaks)

    @property
    def headline(self) -> str:
        """The page's verdict in a few words."""
        parts = (["threshold crossed"] if self.crossed else []) + (
            ["breaks the schema"] if self.schema_breaks else [])
        return ", ".join(parts) or "clean"

    @property
    def label(self) -> str:
        """The reports index's verdict cell: how many of each kind."""
        parts = ([f"{len(self.crossed):,} above threshold"] if self.crossed else []) + (
            [_count(len(self.schema_breaks), "schema break", "schema breaks")]
            if self.schema_breaks else [])
        return ", ".join(parts) or "clean"

    def exit_code(self) -> int:
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
        return {"text": summary["verdict"], "bad": bool(summary.get("flagged"))}
    crossed: List[str] = [str(c) for c in summary.get("crossed") or []]
    breaks = [c[len("traffic "):] for c in crossed if c.startswith("traffic feature '")]
    verdict = Verdict([c for c in crossed if not c.startswith("traffic feature '")], breaks)
    return {"text": verdict.label, "bad": verdict.flagged}
