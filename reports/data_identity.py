"""Which data a run read and evaluated on, so that runs on different data are never compared
silently.

The Evaluator judges a model against its baseline on the same eval rows, so a blessing stays
fair when the data changes; but two runs' RMSEs side by side, or a run against the run that
trained its baseline, mean little when the rows differ. Where a run's data came from is in
ExampleGen's configuration (the table or export, the size and time of its files, the split
queries); which eval rows it evaluated on is summed up by the eval split's statistics.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional

from reports.mlmd import RunRecord

TRAINER_NODE = "Trainer"
EXAMPLE_GEN_SUFFIX = "ExampleGen"
EVAL_SPLIT = "eval"


def _example_gen(record: RunRecord) -> Optional[Any]:
    return next((c for c in record.components if c.node_id.endswith(EXAMPLE_GEN_SUFFIX)), None)


def data_source(record: RunRecord) -> Optional[Dict[str, str]]:
    """What a run read: 'data' (the table or export), 'contents' (its files' sizes and times,
    locally) and 'queries' (a digest of the split queries); None before ExampleGen ran."""
    component = _example_gen(record)
    if component is None:
        return None
    config: Dict[str, Any] = {}
    try:
        config = json.loads(component.parameters.get("custom_config") or "{}")
        config = config.get("custom_config", {}).get("value", {})
    except (ValueError, AttributeError):
        config = {}
    queries = str(component.parameters.get("input_config") or "")
    return {
        "data": str(config.get("source") or config.get("database") or "the warehouse query"),
        "contents": str(config.get("data_fingerprint", "")),
        "queries": hashlib.sha256(queries.encode()).hexdigest()[:12],
    }


def differences(a: Dict[str, str], b: Dict[str, str]) -> List[str]:
    """In words, how data source `b` differs from `a`."""
    found = []
    if a["data"] != b["data"]:
        found.append(f"the data ({a['data']} then {b['data']})")
    elif a["contents"] != b["contents"]:
        found.append(f"the contents of {b['data']} (changed since)")
    if a["queries"] != b["queries"]:
        found.append("the split queries (buckets, sampling or the query file)")
    return found


def trained_in(runs: List[RunRecord], model_uri: str) -> Optional[RunRecord]:
    """The run whose Trainer wrote `model_uri` (not one that reused it from the cache)."""
    for record in runs:
        trainer = record.component(TRAINER_NODE)
        model = record.output(TRAINER_NODE, "model")
        if trainer is not None and model is not None and model.uri == model_uri and \
                trainer.state != "CACHED":
            return record
    return None


def baseline_note(runs: List[RunRecord], record: RunRecord,
                  baseline_model_uri: Optional[str]) -> Optional[str]:
    """A warning when `record` read other data than the run that trained its baseline."""
    if not baseline_model_uri:
        return None
    baseline = trained_in(runs, baseline_model_uri)
    if baseline is None or baseline.run_id == record.run_id:
        return None
    then, now = data_source(baseline), data_source(record)
    if then is None or now is None:
        return None
    found = differences(then, now)
    if not found:
        return None
    return (f"This run's data differs from that of run {baseline.name}, which trained the "
            f"baseline model: {'; '.join(found)}.")


def eval_rows(statistics: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The eval split's example count and a digest of its statistics; None without them."""
    split = statistics.get(EVAL_SPLIT)
    if split is None:
        return None
    parts = [str(split.num_examples)]
    for feature in sorted(split.features, key=lambda f: str(f.path)):
        kind = feature.WhichOneof("stats")
        stats = getattr(feature, kind) if kind else None
        if stats is None:
            continue
        parts.append(f"{feature.path.step}:{stats.common_stats.num_non_missing}")
        if kind == "num_stats":
            parts.append(f"{stats.mean:.6g}:{stats.std_dev:.6g}:{stats.min:.6g}:{stats.max:.6g}")
        elif kind == "string_stats":
            parts.append(f"{stats.unique}:" + ",".join(
                f"{v.value}={v.frequency:.0f}" for v in stats.top_values))
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return {"examples": int(split.num_examples), "digest": digest}


def rows_warning(a_statistics: Dict[str, Any], b_statistics: Dict[str, Any]) -> Optional[str]:
    """A warning when runs A and B were evaluated on different eval rows."""
    a, b = eval_rows(a_statistics), eval_rows(b_statistics)
    if a is None or b is None or a == b:
        return None
    counts = (f"{a['examples']:,} and {b['examples']:,} eval examples"
              if a["examples"] != b["examples"] else
              f"the same number of eval examples ({a['examples']:,}) with other values")
    return (f"A and B were evaluated on different rows ({counts}): their metrics are not "
            "measured on the same data, so the differences below mix model and data.")
