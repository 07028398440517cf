"""One line (or row) of a prediction input file -> an instance to predict, or a rejection.

`local_predict` and `batch_predict` both call `decide` on every record they read, so they
accept, map and refuse exactly the same inputs, and report a bad one the same way: the line is
rejected with its number and the reason, the run goes on, the rejections are counted, and the
command exits with EXIT_REJECTED when more were rejected than --max-error-rate allows.

A record is accepted in either of two spellings, per value:
  - the model's (the REST API's): plurality 'Single(1)', is_male 'True' / true / "true";
  - the natality table's own: plurality as the integer 1..5 (or its text, as in a CSV export),
    is_male as a BOOL. These go through the training query's own mapping
    (warehouse.table_values), the query the model version was trained with
    (serving/training_query.py), so a row of the table means what it meant in training.
Then the REST server's checks apply (serving.validation): a missing plurality, an unknown
category, a number out of range are rejections naming the field. Columns that are not features
are ignored, except `key` (carried to the output; the 0-based row number when absent) and the
label (carried to the output when present, so predictions can be set against actuals: a
finite number above 0, as the training data's, or null or empty; else the row is rejected); a
column named as one of those but for case, spaces or dashes ('Is_Male') is a rejection, not an
ignored column.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from common import numerals
from modules import features
from serving import validation

KEY_COLUMN = "key"
# More rejected rows than --max-error-rate allows (bad data: the project's exit code 2).
EXIT_REJECTED = 2

Record = Union[Dict[str, Any], validation.RequestError, Any]


@dataclasses.dataclass(frozen=True)
class Accepted:
    """A record to predict: its canonical feature values, and what the output row carries."""

    index: int  # 0-based position among the records read
    line: Optional[int]  # 1-based line in the file; None for rows of a query
    key: Any
    instance: Dict[str, validation.Value]
    label: Any = None


@dataclasses.dataclass(frozen=True)
class Rejected:
    index: int
    line: Optional[int]
    key: Any
    reason: str

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.index}"

    def record(self) -> Dict[str, Any]:
        """The errors.jsonl object: the key, where the record was, and why it was refused."""
        located = {"line": self.line} if self.line is not None else {}
        return {KEY_COLUMN: self.key, **located, "error": self.reason}


# ------------------------------------------------------------------------------------------------
# Reading: (line number, record or RequestError)
# ------------------------------------------------------------------------------------------------

def open_text(raw: IO[bytes]) -> IO[str]:
    """An input file's bytes as the text its readers take. utf-8-sig: a byte-order mark (what
    a spreadsheet's "CSV UTF-8" starts with) is not part of the first line. surrogateescape:
    a byte that is not UTF-8 is kept, so that its line alone is rejected, naming it, where a
    strict decoder ends the whole read."""
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _bad_byte(text: str, where: str) -> Optional[str]:
    """The complaint about the first byte of `text` (read by open_text) that is not UTF-8,
    located as byte N of `where`, else None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        offset = len(text[:error.start].encode("utf-8", "surrogateescape")) + 1
        return (f"is not UTF-8 text: byte {offset} of {where} is "
                f"0x{ord(text[error.start]) - 0xDC00:02x}")
    return None


def json_records(lines: Iterable[str]) -> Iterator[Tuple[int, Record]]:
    """Every non-blank line of a JSON-lines text; malformed JSON (nested too deeply included) is
    a RequestError record, and so is a line that is not UTF-8."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        bad = _bad_byte(line, "the line")
        if bad:
            yield number, validation.RequestError(bad)
            continue
        try:
            yield number, validation.loads(line)
        except ValueError as error:
            yield number, validation.RequestError(f"malformed JSON: {error}")
        except RecursionError:  # the parser's nesting limit: that line's fault, not the run's
            yield number, validation.RequestError("malformed JSON: nested too deeply")


_NUMERIC_COLUMNS = frozenset(f.name for f in features.NUMERIC_FEATURES) | {features.LABEL_KEY}


def _cell(column: str, text: str) -> Any:
    """A CSV cell: '' is absent; numeric columns become numbers when they are ASCII decimal
    numbers (common/numerals.py), else stay text, for validation to refuse."""
    if not text.strip():
        return None
    if column in _NUMERIC_COLUMNS:
        number = numerals.decimal(text)
        return text if number is None else number
    return text


def _not_utf8(cells: List[str], names: List[str]) -> Optional[str]:
    """The complaint about the first cell of a CSV row that is not UTF-8, else None."""
    for position, cell in enumerate(cells):
        where = names[position] if position < len(names) else f"field {position + 1}"
        bad = _bad_byte(cell, where)
        if bad:
            return bad
    return None


def _header_problem(header: List[str]) -> Optional[str]:
    """Why no row under this header can be read, else None."""
    twice = validation.first_repeated(header)
    if twice is not None:
        return f"the header names the column {twice!r} twice"
    bad = _not_utf8(header, [f"its field {n}" for n in range(1, len(header) + 1)])
    return None if bad is None else f"the header {bad}"


def csv_records(handle: IO[str]) -> Iterator[Tuple[int, Record]]:
    """Every data row of a CSV text with a header; a row of another width or not UTF-8 is a
    RequestError, and so is every row under a header that names a column twice (which of the
    two values was meant is unknown, as for a JSON line naming a key twice) or is not UTF-8."""
    reader = csv.reader(handle)
    header: Optional[List[str]] = None
    problem: Optional[str] = None
    for cells in reader:
        if header is None:
            header = [name.strip() for name in cells]
            problem = _header_problem(header)
            continue
        if not cells:
            continue
        problem_here = problem or _not_utf8(cells, [f"column {n!r}" for n in header])
        if problem_here is not None:
            yield reader.line_num, validation.RequestError(problem_here)
            continue
        if len(cells) != len(header):
            yield reader.line_num, validation.RequestError(
                f"has {len(cells)} fields, the header has {len(header)}")
            continue
        yield reader.line_num, {name: _cell(name, text) for name, text in zip(header, cells)}


# ------------------------------------------------------------------------------------------------
# Deciding
# ------------------------------------------------------------------------------------------------

def _mapped(feature: features.CategoricalFeature, value: Any,
            query: Optional[str]) -> Tuple[Any, Optional[str]]:
    """(value for validation, how a table value was mapped) for a categorical feature."""
    if isinstance(value, str) and value in feature.vocabulary:
        return value, None
    from warehouse import table_values

    raw = table_values.table_typed(feature.name, value)
    if raw is None:
        return value, None
    mapped = table_values.query_value(feature.name, raw, query)
    if mapped is not None and mapped not in feature.vocabulary:
        return mapped, f"the table's {value!r} is {mapped!r} in the training query"
    return mapped, None


def _reason(error: validation.RequestError) -> str:
    message = error.message
    for prefix in ("instances[0].", "instances[0]: ", "instances[0]"):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


_KNOWN_NAMES = frozenset([*features.FEATURE_NAMES, features.LABEL_KEY, KEY_COLUMN])
_BY_SPELLING = {name.lower(): name for name in _KNOWN_NAMES}


def _misspelled_names(record: Dict[str, Any]) -> Optional[str]:
    """The complaint about a column that is a known name but for case, spaces or dashes
    ('Is_Male', 'mother-age'), else None. Other columns are ignored, as documented; such a one
    would be too, and its feature read as missing (is_male as Unknown) without a word."""
    for name in record:
        if name in _KNOWN_NAMES or not isinstance(name, str):
            continue
        meant = _BY_SPELLING.get(name.strip().lower().replace("-", "_").replace(" ", "_"))
        if meant is not None and meant not in record:
            return (f"column {name!r} is not {meant!r} (names are case-sensitive): rename it, "
                    f"or the row is read without its {meant}")
    return None


def decide(index: int, line: Optional[int], record: Record,
           query: Optional[str] = None) -> Union[Accepted, Rejected]:
    """The one rule for a record read from a file or a query (see the module docstring); a
    table's values are mapped by `query`, the model version's training query
    (serving/training_query.py; None: the query file's)."""
    key = record.get(KEY_COLUMN) if isinstance(record, dict) else None
    key = index if key is None or key == "" else key
    if not isinstance(key, (str, int, float)):  # bool is an int
        # A row's name, echoed to the output: a list or an object nested deep enough would
        # fail the whole run where Beam pickles it, so it is this row's mistake alone.
        return Rejected(index, line, index, f"{KEY_COLUMN}: expected a string or a number, "
                        f"got {type(key).__name__}")
    if isinstance(record, validation.RequestError):
        return Rejected(index, line, key, record.message)
    if not isinstance(record, dict):
        return Rejected(index, line, key, "expected an object of feature values "
                        f"({', '.join(features.FEATURE_NAMES)}), got {type(record).__name__}")
    misspelled = _misspelled_names(record)
    if misspelled:
        return Rejected(index, line, key, misspelled)
    instance: Dict[str, Any] = {}
    notes: Dict[str, str] = {}
    for feature in features.FEATURES:
        if feature.name not in record:
            continue
        value = record[feature.name]
        if isinstance(feature, features.CategoricalFeature):
            value, note = _mapped(feature, value, query)
            if note:
                notes[feature.name] = note
        instance[feature.name] = value
    try:
        columns, _ = validation.feature_columns_from_instances([instance], 1)
    except validation.RequestError as error:
        reason = _reason(error)
        if error.field in notes:
            reason += f" ({notes[error.field]})"
        return Rejected(index, line, key, reason)
    label = record.get(features.LABEL_KEY)
    if isinstance(label, str) and not label.strip():
        label = None  # an empty cell of a JSON line, as of a CSV row: unknown
    problem = _label_problem(label)
    if problem:
        return Rejected(index, line, key, f"{features.LABEL_KEY}: {problem}")
    canonical = {name: values[0] for name, values in columns.items()}
    return Accepted(index, line, key, canonical, label)


def _label_problem(label: Any) -> Optional[str]:
    """Why the label cannot be carried to the output, else None. It is checked as the
    pipeline's data is (the training query keeps weight_pounds > 0; the schema's type is a
    float): a label set against a prediction must be a weight, and a JSON output would write
    inf or NaN as null."""
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, (int, float)):
        shown = validation._quote(label) if isinstance(label, str) else type(label).__name__
        return (f"expected a number (the actual weight, in pounds), got {shown}; leave it out "
                "or empty when unknown")
    try:
        finite = math.isfinite(label)
    except OverflowError:
        finite = False
    if not finite or label <= 0:
        return (f"{validation._quote(label)} is not a weight: the label must be a finite "
                "number above 0")
    return None


def too_many_rejected(read: int, rejected: int, max_error_rate: float) -> Optional[str]:
    """The complaint when the rejected share exceeds `max_error_rate`, else None."""
    if read == 0:
        return "no rows to predict were read"
    if rejected and rejected / read > max_error_rate:
        return (f"{rejected} of {read} rows rejected ({100 * rejected / read:.1f}%), more than "
                f"--max-error-rate {max_error_rate:g} allows")
    return None
