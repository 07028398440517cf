"""The baseline a new model is judged against: the newest blessed model whose files still exist.

TFX's LatestBlessedModelStrategy resolves the newest blessed model from ML Metadata alone. When
the pipeline root was deleted or moved but the metadata store kept, that model's files are gone
and the Evaluator (and a warm start) fails deep inside Beam. This strategy passes over such
models: the run goes on with the newest blessed model still on disk, or, when none is, with no
baseline, judged on the absolute bounds alone as a first run is. That may push a model worse
than the one serving, so it is said loudly: a warning at resolution, and a note (BASELINE_NOTE,
in the run's reports directory) that the runner adds to the push decision.

It is written on ResolverStrategy's public `resolve_artifacts` alone, with TFX's own rule (the
blessed model of highest id), rather than by overriding LatestBlessedModelStrategy's private
`_resolve`: an override that a TFX release stopped calling would leave the stock strategy
running with no sign.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any, Dict, List, Optional, Tuple

from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.common.resolver import ResolverStrategy
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from pipelines.atomic_push import GRAPH_FILES

log = logging.getLogger("babyweight.baseline")

BASELINE_NOTE = "baseline_missing.json"


def model_files_present(uri: str) -> bool:
    """Whether the SavedModel the Evaluator and a warm start load from `uri` is there."""
    serving = path_utils.serving_model_path(uri)
    return any(fileio.exists(os.path.join(serving, name))
               for name in GRAPH_FILES)


def _blessings_by_model(blessings: List[types.Artifact]) -> Dict[int, types.Artifact]:
    """Model id -> the ModelBlessing that blessed it (the Evaluator's custom properties)."""
    return {b.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY):
            b for b in blessings
            if b.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1}


def _channel_keys(input_dict: Dict[str, List[types.Artifact]]) -> Tuple[str, str]:
    """(the Model channel's key, the ModelBlessing channel's key), by their artifacts' types."""
    keys: Dict[type, str] = {}
    for key, artifacts in input_dict.items():
        for kind in (standard_artifacts.Model, standard_artifacts.ModelBlessing):
            if artifacts and isinstance(artifacts[0], kind):
                keys[kind] = key
    if len(input_dict) != 2 or len(keys) != 2:
        raise RuntimeError("The baseline resolver takes one Model and one ModelBlessing "
                           f"channel, got {sorted(input_dict)}")
    return keys[standard_artifacts.Model], keys[standard_artifacts.ModelBlessing]


class PresentBlessedModelStrategy(ResolverStrategy):
    """The newest blessed model (highest id, as TFX's LatestBlessedModelStrategy) among those
    whose files exist; `note_path` receives what was passed over (the runner reads it)."""

    def __init__(self, note_path: str = "") -> None:
        self._note_path = note_path

    def resolve_artifacts(self, store: Any, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        if any(not artifacts for artifacts in input_dict.values()):
            return {key: [] for key in input_dict}  # no model or no blessing yet
        model_key, blessing_key = _channel_keys(input_dict)
        blessings = _blessings_by_model(input_dict[blessing_key])
        blessed = sorted((m for m in input_dict[model_key] if m.id in blessings),
                         key=lambda m: -m.id)
        chosen = next((m for m in blessed if model_files_present(m.uri)), None)
        gone = [m for m in blessed if chosen is None or m.id > chosen.id]
        if gone:
            self._tell([m.uri for m in gone], chosen.uri if chosen else None)
        if chosen is None:
            return {model_key: [], blessing_key: []}
        return {model_key: [chosen], blessing_key: [blessings[chosen.id]]}

    def _tell(self, gone: List[str], baseline: Optional[str]) -> None:
        instead = (f"the newest blessed model still on disk, {baseline}, is the baseline"
                   if baseline else "the new model is judged on the absolute bounds alone, "
                   "as a first run is, and may be worse than the model serving")
        message = (f"The last blessed model's files are gone ({gone[0]}; the pipeline root was "
                   f"deleted or moved?): it cannot be the baseline, so {instead}")
        log.warning("%s", message)
        if self._note_path:
            note: Dict[str, Any] = {"missing": gone, "baseline": baseline, "message": message}
            path = pathlib.Path(self._note_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(note, indent=2))
