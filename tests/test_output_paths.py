"""An output path the run could not write is refused before anything runs: exit 2 and one line
naming the flag, the path and why, never a traceback from deep in the run."""
import os
import pathlib

import pytest

from common.files import unusable_dir, unusable_file
from tests.pipeline_helpers import run_local_runner_refusing

FLAGS = ("--serving-dir", "--reports-dir", "--pipeline-root", "--metadata-path")


def _refused(tmp_path: pathlib.Path, capsys, flag: str, value: pathlib.Path) -> str:
    assert run_local_runner_refusing(tmp_path, flag, str(value)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"local_runner.py: error: {flag} {value}: "), err
    return err


@pytest.mark.parametrize("flag", FLAGS)
def test_a_path_under_a_file_is_refused_naming_the_file(tmp_path, capsys, flag):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    err = _refused(tmp_path, capsys, flag, a_file / "out" / "x")
    assert f"{a_file} is a file, so no directory can be made under it" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"], "the runner wrote outputs"


@pytest.mark.parametrize("flag", ("--serving-dir", "--reports-dir", "--pipeline-root"))
def test_a_directory_path_that_is_a_file_is_refused(tmp_path, capsys, flag):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    assert f"{a_file} is a file, not a directory" in _refused(tmp_path, capsys, flag, a_file)


def test_a_metadata_path_that_is_a_directory_is_refused(tmp_path, capsys):
    directory = tmp_path / "store"
    directory.mkdir()
    err = _refused(tmp_path, capsys, "--metadata-path", directory)
    assert f"{directory} is a directory, not a file" in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        err = _refused(tmp_path, capsys, "--reports-dir", locked / "reports")
        assert f"{locked} is not writable" in err, err
    finally:
        locked.chmod(0o700)


def test_usable_paths_pass(tmp_path):
    (tmp_path / "exists").mkdir()
    assert unusable_dir(tmp_path / "exists") is None
    assert unusable_dir(tmp_path / "new" / "deeper") is None
    assert unusable_file(tmp_path / "new" / "metadata.sqlite") is None
    assert unusable_dir("gs://bucket/root") is None and unusable_file("gs://b/m.sqlite") is None
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    assert unusable_dir(tmp_path / "dangling" / "x") == (
        f"{tmp_path / 'dangling'} is a broken symbolic link")


def test_a_database_under_a_file_is_refused_naming_the_flag(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("")
    err = _refused(tmp_path, capsys, "--database", a_file / "natality.duckdb")
    assert f"{a_file} is a file, not a directory" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"], "the runner wrote outputs"


@pytest.mark.parametrize("command, flag", [("months", "--database"), ("generator", "--out")])
def test_the_warehouse_commands_refuse_a_file_in_the_way_in_one_line(tmp_path, capsys, command,
                                                                      flag):
    import importlib

    a_file = tmp_path / "afile"
    a_file.write_text("")
    target = a_file / "x.duckdb"
    main = importlib.import_module(f"warehouse.{command}").main
    assert main([flag, str(target), "--first-span", "200101"] if command == "months" else
                [flag, str(target), "--rows", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err == f"error: {flag} {target}: {a_file} is a file, not a directory\n", err
