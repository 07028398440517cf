"""ExampleGen's driver for spans: which months of the warehouse a run reads, resolved at run time.

TFX's QueryBasedDriver knows no latest span ("please use RangeConfig.StaticRange"), and it
fingerprints nothing, so a query-based ExampleGen's cache key is its query text alone: a
scheduled run would reuse the first run's examples forever. This driver runs before the cache
is consulted (TFX's launcher, and Vertex AI's pre-cache-check hook, see vertex_span_driver.py):
it reads the warehouse's spans (warehouse/queries/spans.sql, a cheap GROUP BY), selects the run's
spans from the RangeConfig, wraps each split's query to read only those, and records the newest
span and a fingerprint of the selected rows as exec properties. New rows change them, so
ExampleGen runs again; unchanged data leaves them equal, so the cached examples are reused.

RangeConfig, in TFX's own vocabulary, with several spans allowed:
  none or rolling_range(num_spans=0)      every span
  rolling_range(num_spans=N, start=S)     the newest N spans from S on (0 = every one)
  static_range(start=A, end=B)            the spans from A to B
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tfx.components.example_gen import driver as tfx_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from common.config import HASH_BUCKETS_KEY, SPLIT_BUCKETS_KEY
from common.errors import DataValidationError
from warehouse import spans as spans_lib

log = logging.getLogger("babyweight.spans")

# The split layout the driver checks a selection against (custom_config or the hook's flag)
# is common.config.DataConfig.split_layout, under its SPLIT_BUCKETS_KEY and HASH_BUCKETS_KEY.


class SpanSelectionFailed(DataValidationError):
    """The selected spans cannot make the run's splits (exit 2, in plain words)."""


def span_range(range_config_json: Optional[str]) -> Tuple[int, int, int]:
    """(first, last, newest N) of a RangeConfig's JSON; zeros are unbounded."""
    if not range_config_json:
        return 0, 0, 0
    range_config = range_config_pb2.RangeConfig()
    proto_utils.json_to_proto(range_config_json, range_config)
    if range_config.HasField("static_range"):
        static = range_config.static_range
        return static.start_span_number, static.end_span_number, 0
    rolling = range_config.rolling_range
    return rolling.start_span_number, 0, rolling.num_spans


def resolve(exec_properties: Dict[str, Any], warehouse_spans: List[spans_lib.Span],
            settings: Mapping[str, Any]) -> Dict[str, Any]:
    """exec_properties with the split queries restricted to the run's spans, and the span and
    fingerprint that key the cache. `settings` may hold the split layout to check."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    check_fingerprint_covers([split.pattern for split in input_config.splits])
    first, last, newest = span_range(
        exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY))
    try:
        selected = spans_lib.select(warehouse_spans, first, last, newest)
        if settings.get(SPLIT_BUCKETS_KEY):
            spans_lib.check_splits(selected, settings[SPLIT_BUCKETS_KEY],
                                   int(settings[HASH_BUCKETS_KEY]))
    except spans_lib.SpanSelectionError as error:
        raise SpanSelectionFailed(str(error)) from error
    # Every span selected: the queries stay as they are (the filter would only cost time).
    if len(selected) < len(warehouse_spans):
        for split in input_config.splits:
            split.pattern = spans_lib.span_query(split.pattern, selected)
    fingerprint = spans_lib.fingerprint(selected)
    log.info("ExampleGen reads %s", fingerprint)
    exec_properties[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(
        input_config)
    exec_properties[example_gen_utils.SPAN_PROPERTY_NAME] = selected[-1].number
    exec_properties[example_gen_utils.VERSION_PROPERTY_NAME] = None
    exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = fingerprint
    return exec_properties


def check_fingerprint_covers(queries: List[str]) -> None:
    """Refuses to run a query that reads a column the spans' fingerprint does not: the cache
    would then reuse examples made before that column's values changed."""
    missing = sorted({name for query in queries
                      for name in spans_lib.unfingerprinted_columns(query)})
    if missing:
        raise SpanSelectionFailed(
            f"The training query reads {', '.join(missing)}, which "
            f"{spans_lib.SPANS_QUERY_FILE.name}'s rows_fingerprint does not: a change to "
            "those values would not make ExampleGen read the data again. Add them to "
            f"rows_fingerprint in {spans_lib.SPANS_QUERY_FILE}.")


def parse_settings(text: Optional[str]) -> Dict[str, Any]:
    """The split layout as the component or the hook carries it (JSON), or nothing."""
    return json.loads(text) if text else {}


class SpanDriver(tfx_driver.QueryBasedDriver):
    """Resolves the run's spans; subclasses say how to read the warehouse's spans."""

    def read_spans(self, exec_properties: Dict[str, Any]) -> List[spans_lib.Span]:
        raise NotImplementedError

    def span_settings(self, exec_properties: Dict[str, Any]) -> Dict[str, Any]:
        del exec_properties
        return {}

    def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info: Any,
                                component_info: Any) -> Dict[str, Any]:
        del pipeline_info, component_info
        return resolve(exec_properties, self.read_spans(exec_properties),
                       self.span_settings(exec_properties))
