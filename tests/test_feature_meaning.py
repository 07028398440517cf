"""A version trained with other categories than this checkout's modules/features.py, which
check its requests, says so when it loads (serving/training_query.note_feature_meaning), naming
what differs; other differences of the features' meaning (buckets, the cross) are the
version's graph's own business and say nothing. Warm start names the differences too."""
from __future__ import annotations

import json
import logging
import pathlib
import shutil
from typing import Any, Dict

import pytest

from modules import contract, features
from serving import model_store
from tests.serving_fixtures import ServingModels

pytest_plugins = ("tests.serving_fixtures",)
# The edit a later checkout might make: twins spelled another way.
RENAMED = ("Twins(2)", "Twin(2)")
DIFFERENCE = "categorical.plurality.vocabulary"


def _renamed_meaning() -> Dict[str, Any]:
    meaning = features.meaning()
    vocabulary = meaning["categorical"][features.PLURALITY.name]["vocabulary"]
    vocabulary[vocabulary.index(RENAMED[0])] = RENAMED[1]
    return meaning


def _recording(source: pathlib.Path, target: pathlib.Path,
               meaning: Dict[str, Any]) -> pathlib.Path:
    """A copy of the export at `source` that records `meaning` as the one it was trained with."""
    shutil.copytree(source, target)
    recorded = target / contract.FEATURE_MEANING_FILE
    recorded.parent.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(meaning))
    return target


def test_the_differences_name_each_changed_part_of_the_meaning() -> None:
    assert features.meaning_differences(json.loads(json.dumps(features.meaning()))) == []
    assert features.meaning_differences(_renamed_meaning()) == [
        f"{DIFFERENCE}: the model's {_renamed_meaning()['categorical']['plurality']['vocabulary']!r}"
        f", this checkout's {list(features.PLURALITY.vocabulary)!r}"]
    other = features.meaning()
    other["cross_hash_buckets"] = features.CROSS_HASH_BUCKETS + 1
    other["numeric"]["weight_gain"] = {"bucket_boundaries": [1.0]}
    del other["numeric"][features.MOTHER_AGE.name]
    assert features.meaning_differences(other) == [
        f"cross_hash_buckets: the model's {features.CROSS_HASH_BUCKETS + 1}, this checkout's "
        f"{features.CROSS_HASH_BUCKETS}",
        f"numeric.{features.MOTHER_AGE.name}: only this checkout's",
        "numeric.weight_gain: only the model's"]


def test_a_version_trained_with_other_categories_loads_with_a_warning_naming_them(
        stand_in_models: ServingModels, tmp_path: pathlib.Path,
        caplog: pytest.LogCaptureFixture) -> None:
    export = stand_in_models.exports[1]
    assert not (export / contract.FEATURE_MEANING_FILE).exists()
    other_buckets = features.meaning()
    other_buckets["numeric"][features.MOTHER_AGE.name]["bucket_boundaries"] = [30.0]
    cases = {"none recorded": (export, "Version 1 records no features' meaning"),
             "the same": (_recording(export, tmp_path / "same", features.meaning()), None),
             "other buckets": (_recording(export, tmp_path / "buckets", other_buckets), None),
             "renamed": (_recording(export, tmp_path / "renamed", _renamed_meaning()),
                         f"Version 1 was trained with other categories than this checkout's "
                         f"modules/features.py ({DIFFERENCE}: ")}
    for case, (path, warning) in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="babyweight.serving"):
            model = model_store.load_version(1, str(path))
        assert model.version == 1
        said = [r.getMessage() for r in caplog.records if "Version 1 " in r.getMessage()]
        if warning is None:
            assert said == [], case
        else:
            assert len(said) == 1 and said[0].startswith(warning), (case, said)
    broken = _recording(export, tmp_path / "broken", {"numeric": {}})
    with pytest.raises(ValueError, match="version 1's .*feature_meaning.json is not a features' "
                                         "meaning"):
        model_store.load_version(1, str(broken))
