"""Linking each run's training logs into one TensorBoard logdir, named by the run."""
import pathlib

from reports import training_logs


def model_run(tmp_path: pathlib.Path, execution_id: int) -> pathlib.Path:
    """A Trainer model_run directory as TFX names it, with Keras' train/validation logs."""
    run = tmp_path / "root" / "Trainer" / "model_run" / str(execution_id)
    for split in ("train", "validation"):
        (run / split).mkdir(parents=True)
        (run / split / "events.out.tfevents.1.host").write_bytes(b"events")
    return run


def test_a_run_s_logs_show_under_its_name_once(tmp_path):
    logdir = training_logs.logdir_for(tmp_path / "reports")
    assert logdir == (tmp_path / "tensorboard").resolve()
    first = model_run(tmp_path, 9)
    assert training_logs.link_training_logs(logdir, "20261201-094657", str(first)) == (
        "20261201-094657")
    assert (logdir / "20261201-094657" / "validation" / "events.out.tfevents.1.host").is_file()
    assert not pathlib.Path(str((logdir / "20261201-094657").readlink())).is_absolute()
    # Published again, or a later run whose Trainer came from the cache: the same name.
    assert training_logs.link_training_logs(logdir, "20261201-094708", str(first)) == (
        "20261201-094657")
    assert sorted(p.name for p in logdir.iterdir()) == ["20261201-094657"]
    # No logs: nothing to show.
    assert training_logs.link_training_logs(logdir, "x", None) is None
    assert training_logs.link_training_logs(logdir, "x", str(tmp_path / "gone")) is None


def test_logs_are_copied_where_links_cannot_be_made(tmp_path, monkeypatch):
    logdir = training_logs.logdir_for(tmp_path / "reports")
    run = model_run(tmp_path, 12)

    def refuse(*args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(pathlib.Path, "symlink_to", refuse)
    assert training_logs.link_training_logs(logdir, "20261201-100000", str(run)) == (
        "20261201-100000")
    copied = logdir / "20261201-100000"
    assert not copied.is_symlink() and (copied / "train" / "events.out.tfevents.1.host").is_file()
    assert training_logs.link_training_logs(logdir, "20261201-110000", str(run)) == (
        "20261201-100000")


def test_a_name_taken_by_other_logs_is_left_alone(tmp_path, caplog):
    logdir = training_logs.logdir_for(tmp_path / "reports")
    (logdir / "20261201-094657").mkdir(parents=True)
    assert training_logs.link_training_logs(
        logdir, "20261201-094657", str(model_run(tmp_path, 3))) is None
    assert "already holds other logs" in caplog.text
