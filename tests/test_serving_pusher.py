"""A push appears whole or not at all; TF Serving only ever sees complete version directories."""
import json
import shutil

import pytest

from pipelines import atomic_push
from pipelines.components import serving_pusher


@pytest.fixture()
def model_dir(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    return model


def test_push_creates_one_complete_version(model_dir, tmp_path):
    serving = tmp_path / "serving"
    version = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})
    assert list(serving_pusher.serving_versions(serving)) == [version]
    assert (serving / str(version) / "saved_model.pb").read_bytes() == b"graph"
    assert serving_pusher.latest_push_record(serving)["model_uri"] == "m1"
    assert [p.name for p in serving.iterdir()] == [str(version)]


def test_versions_increase_even_within_one_second(model_dir, tmp_path):
    serving = tmp_path / "serving"
    first = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})
    second = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m2"})
    assert second > first
    assert json.loads((serving / str(second) / serving_pusher.PUSH_RECORD).read_text())[
        "version"] == second


def test_failed_copy_leaves_nothing_behind(model_dir, tmp_path, monkeypatch):
    serving = tmp_path / "serving"
    kept = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})

    def copy_then_fail(src, dst, *args, **kwargs):
        shutil.copytree.__wrapped__(src, dst) if hasattr(shutil.copytree, "__wrapped__") else None
        (dst / "saved_model.pb").parent.mkdir(parents=True, exist_ok=True)
        (dst / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(atomic_push.shutil, "copytree", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m2"})
    assert [p.name for p in serving.iterdir()] == [str(kept)]


def test_listing_ignores_staging_junk_and_non_ascii_digit_names(model_dir, tmp_path):
    serving = tmp_path / "serving"
    version = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})
    for junk in (".17.incomplete", "²", "12a", "tmp"):
        (serving / junk).mkdir()
    (serving / "99").write_text("a file, not a version")
    assert list(serving_pusher.serving_versions(serving)) == [version]


def test_stale_staging_of_a_dead_push_is_removed_and_logged(model_dir, tmp_path, caplog):
    serving = tmp_path / "serving"
    kept = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})
    stale = serving / f".{kept + 1}.4242{serving_pusher.STAGING_SUFFIX}"
    (stale / "variables").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        assert serving_pusher.clean_up_dead_pushes(serving) == [stale]
    assert str(stale) in caplog.text
    assert [p.name for p in serving.iterdir()] == [str(kept)]


def test_no_cleanup_while_a_live_push_holds_the_lock(model_dir, tmp_path):
    serving = tmp_path / "serving"
    staging = serving / f".1.1{serving_pusher.STAGING_SUFFIX}"
    staging.mkdir(parents=True)
    with serving_pusher.push_lock(serving):
        assert serving_pusher.clean_up_dead_pushes(serving) == []
    assert staging.exists()


def test_existing_version_is_never_replaced(model_dir, tmp_path, monkeypatch):
    serving = tmp_path / "serving"
    taken = int(atomic_push.time.time()) + 1000
    (serving / str(taken)).mkdir(parents=True)  # empty: a plain rename would replace it
    monkeypatch.setattr(atomic_push, "serving_versions", lambda _: {})
    monkeypatch.setattr(atomic_push.time, "time", lambda: float(taken))
    with pytest.raises(serving_pusher.PushError, match="already exists"):
        serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})
    assert sorted(p.name for p in serving.iterdir()) == [str(taken)]


def test_a_served_model_is_known_by_its_files_not_by_where_it_was_written(model_dir, tmp_path):
    """A new metadata store over the same pipeline root writes its first Trainer's model to
    the URI the served version came from: the URI alone would call a new model a duplicate."""
    serving, uri = tmp_path / "serving", str(model_dir)

    def push() -> int:
        record = {"model_uri": uri, "model_digest": atomic_push.model_digest(model_dir)}
        return serving_pusher.push_atomically(model_dir, serving, record)

    def serving_as(directory) -> object:
        return serving_pusher.newest_serving_as(serving, atomic_push.model_digest(directory), uri)

    assert serving_as(model_dir) is None
    version = push()
    elsewhere = shutil.copytree(model_dir, tmp_path / "elsewhere")
    (serving / str(version) / "assets.extra").mkdir()  # what a run adds after its push
    (serving / str(version) / "assets.extra" / "model_card.html").write_text("card")
    assert serving_as(elsewhere) == version

    (model_dir / "variables" / "variables.index").write_bytes(b"other weights")
    assert serving_as(model_dir) is None, "the same URI, another model"
    newer = push()
    assert serving_as(elsewhere) is None, "only the newest version counts"
    assert serving_as(model_dir) == newer


def test_a_version_without_its_graph_is_not_what_a_model_serves_as(model_dir, tmp_path):
    """A push onto Cloud Storage writes the graph last: a version whose push died after its
    record, or one another push is still copying, cannot load, so the same model is pushed
    again rather than said to serve as it."""
    serving = tmp_path / "serving"
    digest = atomic_push.model_digest(model_dir)
    version = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1",
                                                                  "model_digest": digest})
    half = serving / str(version + 1)
    half.mkdir()
    (half / atomic_push.PUSH_RECORD).write_text(json.dumps(
        {"version": version + 1, "model_uri": "m2", "model_digest": "sha256:other"}))
    assert serving_pusher.newest_serving_as(serving, digest, "m1") == version
    assert serving_pusher.newest_serving_as(serving, "sha256:other", "m2") is None
    (serving / str(version + 2)).mkdir()  # claimed by another push, nothing in it yet
    assert serving_pusher.newest_serving_as(serving, digest, "m1") == version


def test_a_version_pushed_before_digests_is_known_by_its_model_uri(model_dir, tmp_path):
    serving = tmp_path / "serving"
    version = serving_pusher.push_atomically(model_dir, serving, {"model_uri": "m1"})
    digest = atomic_push.model_digest(model_dir)
    assert serving_pusher.newest_serving_as(serving, digest, "m1") == version
    assert serving_pusher.newest_serving_as(serving, digest, "m2") is None
