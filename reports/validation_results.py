"""ExampleValidator's anomalies read back in plain words: feature, what was expected, what came.

The AnomalyGate (pipelines/components/anomaly_gate.py) stops a run with these lines; the run
report and the data-validation notebook show the same lines for any run.
"""
from __future__ import annotations

import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2

ANOMALIES_FILE = "SchemaDiff.pb"


def read_anomalies(anomalies_uri: str,
                   split_names: List[str]) -> Dict[str, anomalies_pb2.Anomalies]:
    """ExampleValidator's anomalies proto for each split."""
    import tensorflow as tf

    result = {}
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        result[split] = anomalies
    return result


def describe(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomaly: the splits it is in, the feature, what was expected and what came."""
    splits_of: Dict[str, List[str]] = {}
    for split, anomalies in sorted(anomalies_by_split.items()):
        infos = list(anomalies.anomaly_info.items())
        if anomalies.HasField("dataset_anomaly_info"):
            infos.append(("(whole dataset)", anomalies.dataset_anomaly_info))
        for feature, info in sorted(infos):
            details = [f"{r.short_description}. {r.description}" for r in info.reason]
            for detail in details or [info.description]:
                splits_of.setdefault(f"feature '{feature}': {detail}", []).append(split)
    return [f"[{', '.join(splits)}] {line}" for line, splits in splits_of.items()]
