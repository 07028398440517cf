"""TFDV's comparators over served traffic: skew against training, drift against the previous
window, and the served predictions against the same model's eval predictions.

The thresholds are the schema's (`schema/schema.pbtxt`, written from modules/features.py):
L-infinity distance for categorical features, Jensen-Shannon divergence for numeric ones. TFDV
measures every compared feature (`drift_skew_info`), crossed or not, so the page and the
gauges show each distance beside its threshold.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import pandas as pd
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from modules import contract, features
from serving import request_log

SKEW, DRIFT, PREDICTION = "skew", "drift", "prediction"
MEASURES = {"L_INFTY": "L-infinity distance",
            "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon divergence",
            "NORMALIZED_ABSOLUTE_DIFFERENCE": "normalized absolute difference"}
Stats = statistics_pb2.DatasetFeatureStatisticsList


@dataclasses.dataclass(frozen=True)
class Finding:
    """One distance TFDV measured between two distributions of one feature."""

    kind: str  # skew, drift or prediction
    feature: str
    measure: str
    value: float
    threshold: float

    @property
    def crossed(self) -> bool:
        return self.value > self.threshold

    def sentence(self) -> str:
        against = {SKEW: "training data", DRIFT: "previous window",
                   PREDICTION: "eval predictions"}[self.kind]
        verdict = "ABOVE" if self.crossed else "within"
        return (f"{self.kind} of {self.feature} vs the {against}: {self.measure} "
                f"{self.value:.4f}, {verdict} the threshold {self.threshold:g}")


def statistics(frame: pd.DataFrame, columns: List[str]) -> Stats:
    """TFDV statistics of the named columns (numerics as TFDV's INT or FLOAT, strings BYTES)."""
    import tensorflow_data_validation as tfdv

    return tfdv.generate_statistics_from_dataframe(frame[columns].reset_index(drop=True))


def feature_statistics(frame: pd.DataFrame) -> Stats:
    return statistics(frame, list(features.FEATURE_NAMES))


def prediction_statistics(values) -> Stats:
    frame = pd.DataFrame({request_log.PREDICTION_KEY: pd.Series(values, dtype="float32")})
    return statistics(frame, [request_log.PREDICTION_KEY])


def monitoring_schema() -> schema_pb2.Schema:
    """The curated schema with its declared thresholds (the label is absent from traffic)."""
    return contract.load_schema()


def prediction_schema() -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name=request_log.PREDICTION_KEY, type=schema_pb2.FLOAT)
    feature.skew_comparator.jensen_shannon_divergence.threshold = (
        features.PREDICTION_SKEW_THRESHOLD)
    return schema


def _findings(anomalies, kind: str) -> List[Finding]:
    found = []
    for info in anomalies.drift_skew_info:
        name = ".".join(info.path.step)
        measurements = info.drift_measurements if kind == DRIFT else info.skew_measurements
        for measurement in measurements:
            type_name = measurement.Type.Name(measurement.type)
            found.append(Finding(kind, name, MEASURES.get(type_name, type_name),
                                 float(measurement.value), float(measurement.threshold)))
    return sorted(found, key=lambda f: f.feature)


def skew(training: Stats, serving: Stats, schema: schema_pb2.Schema) -> List[Finding]:
    import tensorflow_data_validation as tfdv

    anomalies = tfdv.validate_statistics(statistics=training, schema=schema,
                                         environment=contract.SERVING_ENVIRONMENT,
                                         serving_statistics=serving)
    return _findings(anomalies, SKEW)


def drift(current: Stats, previous: Stats, schema: schema_pb2.Schema) -> List[Finding]:
    import tensorflow_data_validation as tfdv

    anomalies = tfdv.validate_statistics(statistics=current, schema=schema,
                                         environment=contract.SERVING_ENVIRONMENT,
                                         previous_statistics=previous)
    return _findings(anomalies, DRIFT)


def predictions(evaluated: Stats, served: Stats) -> List[Finding]:
    import tensorflow_data_validation as tfdv

    anomalies = tfdv.validate_statistics(statistics=evaluated, schema=prediction_schema(),
                                         serving_statistics=served)
    return [dataclasses.replace(f, kind=PREDICTION) for f in _findings(anomalies, SKEW)]


def traffic_anomalies(serving: Stats, schema: schema_pb2.Schema) -> Dict[str, str]:
    """The schema's own checks on the traffic (a value outside a domain, a missing feature)."""
    import tensorflow_data_validation as tfdv

    anomalies = tfdv.validate_statistics(statistics=serving, schema=schema,
                                         environment=contract.SERVING_ENVIRONMENT)
    return {name: info.description for name, info in anomalies.anomaly_info.items()}


def feature_stats(stats: Stats, name: str) -> Optional[statistics_pb2.FeatureNameStatistics]:
    """One feature's statistics in the first dataset of `stats`."""
    for feature in stats.datasets[0].features:
        if feature.path.step and feature.path.step[-1] == name or feature.name == name:
            return feature
    return None
