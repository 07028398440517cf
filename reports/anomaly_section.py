"""The anomalies section: each anomaly in plain words, with what the schema expects and what the
statistics saw, so the analyst sees the mismatch without opening a proto."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from reports.facts import RunFacts

# `validation_results.describe` writes "[splits] feature 'name': detail".
LINE = re.compile(r"^\[(?P<splits>[^\]]*)\] feature '(?P<feature>[^']*)': (?P<detail>.*)$")
TYPE_NAMES = {0: "INT", 1: "FLOAT", 2: "STRING", 3: "BYTES", 4: "STRUCT"}


def expected(schema: Any, name: str) -> str:
    """The schema's promise for one feature: type, domain, presence."""
    if schema is None:
        return "(schema not available)"
    feature = next((f for f in schema.feature if f.name == name), None)
    if feature is None:
        return "not in the schema"
    from tensorflow_metadata.proto.v0 import schema_pb2

    parts = [schema_pb2.FeatureType.Name(feature.type)]
    if feature.HasField("int_domain"):
        parts.append(f"from {feature.int_domain.min} to {feature.int_domain.max}")
    elif feature.HasField("float_domain"):
        domain = feature.float_domain
        low = f"{domain.min:g}" if domain.HasField("min") else "-inf"
        high = f"{domain.max:g}" if domain.HasField("max") else "inf"
        parts.append(f"from {low} to {high}")
    elif feature.HasField("domain") or feature.HasField("string_domain"):
        domain = feature.string_domain if feature.HasField("string_domain") else next(
            (d for d in schema.string_domain if d.name == feature.domain), None)
        if domain is not None:
            parts.append("one of " + ", ".join(domain.value))
    if feature.HasField("presence") and feature.presence.min_fraction >= 1.0:
        parts.append("in every example")
    return "; ".join(parts)


def _domain(schema: Any, name: str) -> Optional[List[str]]:
    """The string values the schema allows for a feature, if it restricts them."""
    if schema is None:
        return None
    feature = next((f for f in schema.feature if f.name == name), None)
    if feature is None:
        return None
    if feature.HasField("string_domain"):
        return list(feature.string_domain.value)
    if feature.HasField("domain"):
        domain = next((d for d in schema.string_domain if d.name == feature.domain), None)
        return list(domain.value) if domain is not None else None
    return None


def seen(facts: RunFacts, name: str, splits: List[str]) -> List[Dict[str, Any]]:
    """What the statistics of the named splits hold for one feature; for a string feature its
    most frequent values, those outside the schema's domain marked."""
    allowed = _domain(facts.schema, name)
    out = []
    for split in splits or list(facts.statistics):
        stats = facts.statistics.get(split)
        feature = next((f for f in stats.features if ".".join(f.path.step) == name),
                       None) if stats is not None else None
        if feature is None:
            out.append({"split": split, "text": "absent", "shown": []})
            continue
        kind = TYPE_NAMES.get(feature.type, str(feature.type))
        values: List[Dict[str, Any]] = []
        if feature.HasField("num_stats"):
            text = f"{kind} from {feature.num_stats.min:g} to {feature.num_stats.max:g}"
            common = feature.num_stats.common_stats
        else:
            text = f"{kind}: "
            common = feature.string_stats.common_stats
            values = [{"value": v.value, "count": f"{int(v.frequency):,}",
                       "unexpected": allowed is not None and v.value not in allowed}
                      for v in feature.string_stats.top_values[:8]]
        if common.num_missing:
            text += f" (missing in {int(common.num_missing):,})"
        out.append({"split": split, "text": text, "shown": values})
    return out


def context(facts: RunFacts) -> Dict[str, Any]:
    """None checked / none found / one row per anomaly."""
    gate = facts.record.component("AnomalyGate")
    rows: List[Dict[str, Optional[str]]] = []
    for line in facts.anomalies or []:
        match = LINE.match(line)
        if match is None:
            rows.append({"splits": "", "feature": "", "detail": line, "expected": "",
                         "seen": [], "line": line})
            continue
        splits = [s.strip() for s in match["splits"].split(",") if s.strip()]
        feature = match["feature"]
        known = not feature.startswith("(")
        rows.append({
            "splits": ", ".join(splits), "feature": feature, "detail": match["detail"],
            "expected": expected(facts.schema, feature) if known else "",
            "seen": seen(facts, feature, splits) if known else [],
            "line": line,
        })
    return {
        "checked": facts.anomalies is not None,
        "rows": rows,
        "gate_state": gate.state if gate else None,
        "stopped": bool(gate and gate.state == "FAILED"),
    }
