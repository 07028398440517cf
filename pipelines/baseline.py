"""The baseline a new model is judged against: the newest blessed model whose files still exist.

TFX's LatestBlessedModelStrategy resolves the newest blessed model from ML Metadata alone. When
the pipeline root was deleted or moved but the metadata store kept, that model's files are gone
and the Evaluator (and a warm start) fails deep inside Beam. This strategy passes over such
models: the run goes on with the newest blessed model still on disk, or, when none is, with no
baseline, judged on the absolute bounds alone as a first run is. That may push a model worse
than the one serving, so it is said loudly: a warning at resolution, and a note (BASELINE_NOTE,
in the run's reports directory) that the runner adds to the push decision.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.dsl.io import fileio
from tfx.utils import path_utils

log = logging.getLogger("babyweight.baseline")

BASELINE_NOTE = "baseline_missing.json"


def model_files_present(uri: str) -> bool:
    """Whether the SavedModel the Evaluator and a warm start load from `uri` is there."""
    serving = path_utils.serving_model_path(uri)
    return any(fileio.exists(os.path.join(serving, name))
               for name in ("saved_model.pb", "saved_model.pbtxt"))


def _blessed_ids(blessings: List[types.Artifact]) -> set:
    return {b.get_int_custom_property("current_model_id") for b in blessings
            if b.get_int_custom_property("blessed") == 1}


class PresentBlessedModelStrategy(LatestBlessedModelStrategy):
    """LatestBlessedModelStrategy over the models whose files exist; `note_path` receives
    what was passed over (the runner reads it)."""

    def __init__(self, note_path: str = "") -> None:
        self._note_path = note_path

    def _resolve(self, input_dict: Dict[str, List[types.Artifact]], model_channel_key: str,
                 model_blessing_channel_key: str) -> Dict[str, List[types.Artifact]]:
        models = input_dict[model_channel_key]
        present = [m for m in models if model_files_present(m.uri)]
        result = super()._resolve({**input_dict, model_channel_key: present},
                                  model_channel_key, model_blessing_channel_key)
        chosen = result[model_channel_key][0] if result[model_channel_key] else None
        blessed = _blessed_ids(input_dict[model_blessing_channel_key])
        kept = {m.id for m in present}
        gone = sorted((m for m in models if m.id not in kept and m.id in blessed
                       and (chosen is None or m.id > chosen.id)), key=lambda m: -m.id)
        if gone:
            self._tell([m.uri for m in gone], chosen.uri if chosen else None)
        return result

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
