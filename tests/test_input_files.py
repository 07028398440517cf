"""Prediction input files as people write them: a spreadsheet's CSV (a byte-order mark
first) and a header spelled in another case (serving/batch_input.py, serving/instances.py)."""
from __future__ import annotations

import io
import json
import math
import pathlib
from typing import Any

from modules import features
from serving import local_predict
from tests.serving_fixtures import RunningServer
from tests.test_batch_predict import _errors, _read_output, _run

LABEL = features.LABEL_KEY

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)


def test_a_spreadsheet_s_csv_keeps_its_first_column_and_a_misspelled_one_is_rejected(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """A byte-order mark (a spreadsheet's "CSV UTF-8") was read into the first column's name,
    so `is_male` became an ignored column and every row was predicted as sex Unknown; a
    header spelled 'Is_Male' was ignored the same way. The one is read, the other refused."""
    model_dir = str(shared_server.model_dir)
    header, rows = "is_male,mother_age,plurality,gestation_weeks", ["True,26,Single(1),39",
                                                                   "False,26,Single(1),39"]
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    plain.write_text("\n".join([header, *rows]) + "\n")
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    outputs = []
    for source in (plain, marked):
        out = tmp_path / f"{source.stem}.jsonl"
        code, printed, _ = _run(["--model-dir", model_dir, "--input", str(source), "--output",
                                 str(out)], capsys)
        assert code == 0, printed
        outputs.append(_read_output(out))
    assert outputs[0] == outputs[1]
    assert [g["is_male"] for g in outputs[1]] == ["True", "False"]
    misspelled = tmp_path / "misspelled.csv"
    misspelled.write_text("\n".join(["Is_Male" + header[len("is_male"):], *rows]) + "\n")
    out = tmp_path / "misspelled.jsonl"
    code, printed, _ = _run(["--model-dir", model_dir, "--input", str(misspelled), "--output",
                             str(out)], capsys)
    assert code == 2 and "0 predicted" in printed
    assert {e["error"] for e in _errors(out)} == {
        "column 'Is_Male' is not 'is_male' (names are case-sensitive): rename it, or the row "
        "is read without its is_male"}


def test_a_source_matching_nothing_or_without_the_table_s_columns_is_named_in_one_line(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """As the pipeline's pre-flight says it; and DuckDB's error without the SQL it quotes."""
    model_dir = str(shared_server.model_dir)
    unmatched = str(tmp_path / "nope" / "*.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    for source, said in ((unmatched, f"error: --source {unmatched!r} matches no file"),
                         (str(other), "error: cannot run the training query on ")):
        code, _, err = _run(["--model-dir", model_dir, "--source", source, "--output",
                             str(tmp_path / "out.jsonl")], capsys)
        assert code == 1 and said in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_a_csv_header_naming_a_column_twice_rejects_its_rows(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """Which of the two mother_age values was meant is unknown (the last one was read): as a
    JSON line naming a key twice, each row is rejected naming the column."""
    source = tmp_path / "twice.csv"
    source.write_text("key,is_male,mother_age,plurality,gestation_weeks,mother_age\n"
                      "a,True,26,Single(1),39,41\nb,False,30,Twins(2),38,30\n")
    out = tmp_path / "twice.jsonl"
    code, printed, err = _run(["--model-dir", str(shared_server.model_dir), "--input",
                               str(source), "--output", str(out)], capsys)
    assert code == 2 and "0 predicted" in printed and "2 of 2 rows rejected" in err
    assert _errors(out) == [
        {"key": key, "line": line, "error": "the header names the column 'mother_age' twice"}
        for key, line in ((0, 2), (1, 3))]


def test_only_ascii_decimal_numbers_are_read_as_numbers(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """Python's float() and int() read '4_0' as 40, full-width '２６' as 26 and Arabic-Indic
    '٣' as 3: such cells are text here, refused naming the field, in a CSV file as in a JSON
    line; the table's plurality in ASCII digits is still read."""
    model_dir = str(shared_server.model_dir)
    source = tmp_path / "digits.csv"
    source.write_text("key,is_male,mother_age,plurality,gestation_weeks\n"
                      "under,True,4_0,Single(1),39\nwide,True,２６,Single(1),39\n"
                      "arabic,True,26,٣,39\nascii,True,26.0,3,3.9e1\n", encoding="utf-8")
    out = tmp_path / "digits.jsonl"
    code, printed, _ = _run(["--model-dir", model_dir, "--input", str(source), "--output",
                             str(out)], capsys)
    assert code == 2 and "1 predicted" in printed
    (row,) = _read_output(out)
    assert (row["key"], row["plurality"], row["mother_age"], row["gestation_weeks"]) == (
        "ascii", features.PLURALITY_NAMES[2], 26.0, 39.0)
    errors = _errors(out)
    assert [(e["key"], e["error"].split(":")[0]) for e in errors] == [
        ("under", "mother_age"), ("wide", "mother_age"), ("arabic", "plurality")]
    assert "'٣' is not in the vocabulary" in errors[2]["error"]

    lines = tmp_path / "digits.jsonl.in"
    lines.write_text(json.dumps({"is_male": "True", "mother_age": 26, "plurality": "٣",
                                 "gestation_weeks": 39}) + "\n", encoding="utf-8")
    printed_lines = io.StringIO()
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(lines)],
                              out=printed_lines) == local_predict.EXIT_INVALID
    (answer,) = [json.loads(line) for line in printed_lines.getvalue().splitlines()]
    assert answer["line"] == 1 and answer["error"].startswith("plurality: '٣' is not")


def test_a_line_that_is_not_utf8_is_rejected_alone_naming_it(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """A Latin-1 'é' (or any byte that is not UTF-8) ended local_predict with a traceback and
    batch_predict with an error naming no line: now it is that line's rejection."""
    model_dir = str(shared_server.model_dir)
    good = json.dumps({"is_male": "True", "mother_age": 26, "plurality": "Single(1)",
                       "gestation_weeks": 39}).encode()
    latin1 = good.replace(b'"True"', b'"Tr\xe9"')
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(b"\n".join([good, latin1, good]) + b"\n")
    offset = latin1.index(b"\xe9") + 1
    reason = f"is not UTF-8 text: byte {offset} of the line is 0xe9"
    printed = io.StringIO()
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(source)],
                              out=printed) == local_predict.EXIT_INVALID
    answers = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert [list(a) for a in answers] == [[features.LABEL_KEY], ["line", "error"],
                                          [features.LABEL_KEY]]
    assert answers[1] == {"line": 2, "error": reason}
    err = capsys.readouterr().err
    assert f"error: line 2: {reason}" in err and "read 3, predicted 2, rejected 1" in err

    out = tmp_path / "latin1.out.jsonl"
    code, said, _ = _run(["--model-dir", model_dir, "--input", str(source), "--output",
                          str(out)], capsys)
    assert code == 2 and "2 predicted" in said
    assert _errors(out) == [{"key": 1, "line": 2, "error": reason}]
    csv_source = tmp_path / "latin1.csv"
    csv_source.write_bytes(b"key,is_male,mother_age,plurality,gestation_weeks\n"
                           b"a,True,26,Single(1),39\nb,Tr\xe9,26,Single(1),39\n")
    code, said, _ = _run(["--model-dir", model_dir, "--input", str(csv_source), "--output",
                          str(out)], capsys)
    assert code == 2 and "1 predicted" in said
    assert _errors(out) == [{"key": 1, "line": 3, "error": "is not UTF-8 text: byte 3 of "
                             "column 'is_male' is 0xe9"}]


def test_a_label_that_is_not_a_weight_rejects_its_row_naming_it(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """The label was carried to the output unchecked: a CSV output wrote inf, nan, -5 and
    'heavy' as actual weights, and a JSON one wrote inf and NaN as null, all with exit 0. It is
    checked as the training data is (a finite number above 0), or empty for unknown."""
    source = tmp_path / "labels.csv"
    features_cells = "True,26,Single(1),39"
    labels = ["7.5", "inf", "nan", "-5", "0", "heavy", "", "1e999"]
    source.write_text("key,is_male,mother_age,plurality,gestation_weeks,weight_pounds\n" + "".join(
        f"k{n},{features_cells},{label}\n" for n, label in enumerate(labels)))
    lines = tmp_path / "labels.jsonl"
    lines.write_text("".join(json.dumps({"key": f"k{n}", "is_male": "True", "mother_age": 26,
                                         "plurality": "Single(1)", "gestation_weeks": 39,
                                         LABEL: label}) + "\n"
                             for n, label in enumerate([7.5, math.inf, math.nan, -5, None, ""])))
    for given, kept in ((source, ["k0", "k6"]), (lines, ["k0", "k4", "k5"])):
        for out in (tmp_path / "out.csv", tmp_path / "out.jsonl"):
            code, printed, _ = _run(["--model-dir", str(shared_server.model_dir), "--input",
                                     str(given), "--output", str(out)], capsys)
            assert code == 2 and f"{len(kept)} predicted" in printed, printed
            assert [row["key"] for row in _read_output(out)] == kept
            assert [str(row.get(LABEL, "")) for row in _read_output(out)] == (
                ["7.5"] + [""] * (len(kept) - 1))
            errors = _errors(out)
            assert all(e["error"].startswith(f"{LABEL}: ") for e in errors), errors
            if given == source:
                assert [e["key"] for e in errors] == ["k1", "k2", "k3", "k4", "k5", "k7"]
                assert "got 'heavy'" in errors[4]["error"]


def test_a_plurality_too_large_for_the_table_rejects_its_row_naming_it(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """A whole number beyond the table's 64-bit plurality went to DuckDB's CAST, whose error
    ended local_predict with a traceback and failed the whole batch run."""
    model_dir = str(shared_server.model_dir)
    good = {"is_male": "True", "mother_age": 26, "plurality": 1, "gestation_weeks": 39}
    source = tmp_path / "huge.jsonl"
    source.write_text(json.dumps(good) + "\n" + "".join(
        json.dumps(good).replace('"plurality": 1', f'"plurality": {huge}') + "\n"
        for huge in ("99999999999999999999", "1e20", '"99999999999999999999"')))
    printed = io.StringIO()
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(source)],
                              out=printed) == local_predict.EXIT_INVALID
    answers = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert [list(a) for a in answers] == [[LABEL]] + [["line", "error"]] * 3
    assert all(a["error"].startswith("plurality: ") for a in answers[1:]), answers
    assert "Traceback" not in capsys.readouterr().err

    cells = tmp_path / "huge.csv"
    cells.write_text("is_male,mother_age,plurality,gestation_weeks\nTrue,26,1,39\n"
                     "True,26,99999999999999999999,39\n")
    out = tmp_path / "huge.out.jsonl"
    code, said, _ = _run(["--model-dir", model_dir, "--input", str(cells), "--output",
                          str(out)], capsys)
    assert code == 2 and "1 predicted" in said
    assert [(e["line"], e["error"].split(":")[0]) for e in _errors(out)] == [(3, "plurality")]


def test_a_line_nested_too_deeply_is_rejected_alone(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """The JSON parser's RecursionError ended local_predict with a traceback and failed the
    whole batch run: it is that line's rejection, as the server's 400 for such a body."""
    model_dir = str(shared_server.model_dir)
    good = json.dumps({"is_male": "True", "mother_age": 26, "plurality": "Single(1)",
                       "gestation_weeks": 39})
    source = tmp_path / "deep.jsonl"
    source.write_text("\n".join([good, "[" * 100_000 + "]" * 100_000, good]) + "\n")
    reason = "malformed JSON: nested too deeply"
    printed = io.StringIO()
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(source)],
                              out=printed) == local_predict.EXIT_INVALID
    answers = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert [list(a) for a in answers] == [[LABEL], ["line", "error"], [LABEL]]
    assert answers[1] == {"line": 2, "error": reason}
    assert "Traceback" not in capsys.readouterr().err
    out = tmp_path / "deep.out.jsonl"
    code, said, _ = _run(["--model-dir", model_dir, "--input", str(source), "--output",
                          str(out)], capsys)
    assert code == 2 and "2 predicted" in said
    assert _errors(out) == [{"key": 1, "line": 2, "error": reason}]


def test_a_key_that_is_not_a_name_rejects_its_row_alone(
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    """A key is carried to the output: one nested deeply enough failed the whole batch run
    where Beam pickled it (RecursionError); a list or an object is that row's mistake."""
    row = {"is_male": "True", "mother_age": 26, "plurality": "Single(1)", "gestation_weeks": 39}
    deep = json.dumps(row)[:-1] + ', "key": ' + "[" * 600 + "0" + "]" * 600 + "}"
    lines = [json.dumps({**row, "key": "a"}), deep,
             json.dumps({**row, "key": {"id": 3}}), json.dumps({**row, "key": 7})]
    source = tmp_path / "keys.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "keys.out.jsonl"
    code, said, _ = _run(["--model-dir", str(shared_server.model_dir), "--input", str(source),
                          "--output", str(out), "--max-error-rate", "0.6"], capsys)
    assert code == 0 and "2 predicted" in said, said
    assert [r["key"] for r in map(json.loads, out.read_text().splitlines())] == ["a", 7]
    assert _errors(out) == [
        {"key": 1, "line": 2, "error": "key: expected a string or a number, got list"},
        {"key": 2, "line": 3, "error": "key: expected a string or a number, got dict"}]
