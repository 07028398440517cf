"""The request log: what a logged row holds, sampling, rotation within a total size, and that a
log that cannot write drops and counts records instead of failing the caller."""
from __future__ import annotations

import errno
import pathlib
import threading

import pytest
import tensorflow as tf

from modules import features
from serving import request_log
from serving.request_log import RequestLog, RequestLogConfig

INSTANCE = {"is_male": "True", "plurality": "Twins(2)", "mother_age": 31.0,
            "gestation_weeks": 38.6}


def _read(directory: pathlib.Path):
    rows = []
    for path in request_log.complete_files(directory):
        for record in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(record.numpy())
            rows.append({k: v for k, v in example.features.feature.items()})
    return rows


def test_a_logged_row_holds_the_features_prediction_version_and_time(tmp_path):
    log = RequestLog(RequestLogConfig(str(tmp_path / "log"), sample_rate=1.0))
    log.log([INSTANCE, {**INSTANCE, "is_male": ""}], [5.5, 6.25], version=7)
    assert log.flush()
    log.close()
    rows = _read(tmp_path / "log")
    assert len(rows) == 2 and log.written == 2 and log.dropped == 0
    first, second = rows
    assert set(first) == set(request_log.RECORD_KEYS)
    assert first["is_male"].bytes_list.value == [b"True"]
    assert first["gestation_weeks"].int64_list.value == [39]  # rounded, as the model sees it
    assert first[request_log.PREDICTION_KEY].float_list.value == [5.5]
    assert first[request_log.VERSION_KEY].int64_list.value == [7]
    assert first[request_log.TIME_KEY].int64_list.value[0] > 0
    # A blank sex is the declared missing value, the spelling the training data has.
    assert second["is_male"].bytes_list.value == [features.IS_MALE.missing_value.encode()]


def test_sampling_keeps_about_the_rate_of_requests(tmp_path):
    log = RequestLog(RequestLogConfig(str(tmp_path), sample_rate=0.25, seed=3))
    requests = 2000
    for _ in range(requests):
        log.log([INSTANCE], [7.0], version=1)
    log.close()
    # Binomial(2000, 0.25): sd about 19.4; 6 sd either side never fails by chance in practice.
    assert abs(log.written - requests * 0.25) < 6 * (requests * 0.25 * 0.75) ** 0.5
    assert log.dropped == 0


def test_files_rotate_and_the_oldest_are_deleted_within_the_total(tmp_path):
    one = len(request_log.encode(INSTANCE, 7.0, 1, 1)) + 16
    config = RequestLogConfig(str(tmp_path), sample_rate=1.0, max_file_bytes=10 * one,
                              max_total_bytes=30 * one)
    log = RequestLog(config)
    for _ in range(100):
        log.log([INSTANCE], [7.0], version=1)
    log.close()
    files = request_log.complete_files(tmp_path)
    total = sum(p.stat().st_size for p in files)
    assert 1 < len(files) <= 3 and total <= config.max_total_bytes
    assert not list(tmp_path.glob("*" + request_log.PARTIAL))
    assert len(_read(tmp_path)) == total // one  # the kept files are whole


def test_a_file_another_writer_deleted_first_is_no_reason_to_drop_records(tmp_path,
                                                                          monkeypatch):
    """Two writers of one directory (two servers, or a server and batch prediction) make room
    at the same time: a listed file may be gone before its size is read."""
    one = len(request_log.encode(INSTANCE, 7.0, 1, 1)) + 16
    config = RequestLogConfig(str(tmp_path), sample_rate=1.0, max_file_bytes=10 * one,
                              max_total_bytes=30 * one)
    listed = request_log.complete_files
    ghost = tmp_path / f"requests-00000000T000000000000-1-000001{request_log.SUFFIX}"
    monkeypatch.setattr(request_log, "complete_files", lambda d: [ghost, *listed(d)])
    log = RequestLog(config)
    for _ in range(100):
        log.log([INSTANCE], [7.0], version=1)
    log.close()
    assert log.dropped == 0 and log.written == 100
    assert sum(p.stat().st_size for p in listed(tmp_path)) <= config.max_total_bytes


def test_an_unwritable_directory_counts_dropped_records_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    log = RequestLog(RequestLogConfig(str(blocker / "log"), sample_rate=1.0))
    for _ in range(5):
        log.log([INSTANCE, INSTANCE], [7.0, 7.0], version=1)
    log.close()
    assert log.written == 0 and log.dropped == 10
    warnings = [r for r in caplog.records if r.name == request_log.LOGGER.name]
    assert len(warnings) == 1 and "cannot write" in warnings[0].getMessage()


class _Disk:
    """Free bytes left on one disk, shared by every file on it: a new file does not free any."""

    def __init__(self, room: int) -> None:
        self.room = room


class _FullDisk:
    """A file on `disk`: it takes what fits, then refuses, as an unbuffered file on a full disk
    does."""

    def __init__(self, path: str, disk: _Disk) -> None:
        self.inner = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by the log
        self.disk = disk

    def write(self, data) -> int:
        if self.disk.room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = self.inner.write(bytes(data[:self.disk.room]))
        self.disk.room -= taken
        return taken

    def close(self) -> None:
        self.inner.close()


def test_a_full_disk_drops_the_torn_file_and_counts_its_records(tmp_path):
    """However the writer thread groups the five records into writes and files, what is
    counted written is exactly what a reader finds in complete files, the rest is counted
    dropped, and no torn file is left; the disk holds three records and a bit, so at least
    two are dropped."""
    one = len(request_log.encode(INSTANCE, 7.0, 1, 1)) + 16
    disk = _Disk(room=3 * one + 5)
    log = RequestLog(RequestLogConfig(str(tmp_path), sample_rate=1.0),
                     opener=lambda path: _FullDisk(path, disk))
    for _ in range(5):
        log.log([INSTANCE], [7.0], version=1)
    log.close()
    assert log.written + log.dropped == 5 and log.dropped >= 2
    assert len(_read(tmp_path)) == log.written
    assert not list(tmp_path.glob("*" + request_log.PARTIAL))


def test_a_full_queue_drops_instead_of_blocking(tmp_path):
    release = threading.Event()

    def stuck_disk(path: str):
        release.wait(30)
        return open(path, "wb")  # noqa: SIM115 - closed by the log

    log = RequestLog(RequestLogConfig(str(tmp_path), sample_rate=1.0, queue_size=2),
                     opener=stuck_disk)
    calls = 10
    for _ in range(calls):
        log.log([INSTANCE], [7.0], version=1)  # returns although the writer is stuck
    # At most the queue's two and the one the writer holds are still to be written.
    assert log.dropped >= calls - 3
    release.set()
    log.close()
    assert log.written + log.dropped == calls


def test_a_sample_rate_outside_zero_to_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sample rate"):
        RequestLogConfig(str(tmp_path), sample_rate=2.0)


def test_the_hand_written_wire_format_is_tf_examples():
    expected = tf.train.Example()
    feature = expected.features.feature
    feature["is_male"].bytes_list.value.append(b"True")
    feature["plurality"].bytes_list.value.append(b"Twins(2)")
    feature["mother_age"].int64_list.value.append(-3)  # negative: ten-byte varint
    feature["gestation_weeks"].int64_list.value.append(39)
    feature[request_log.PREDICTION_KEY].float_list.value.append(5.25)
    feature[request_log.VERSION_KEY].int64_list.value.append(2**40)
    feature[request_log.TIME_KEY].int64_list.value.append(1_800_000_000_123)
    encoded = request_log.encode({**INSTANCE, "mother_age": -3}, 5.25, 2**40, 1_800_000_000_123)
    assert tf.train.Example.FromString(encoded) == expected


def test_columns_encode_row_by_row_as_instances_do():
    """The server hands its columns over as they are (bytes or str, blanks): each row's record
    is the one its instance gives."""
    columns = {"is_male": [b"False", ""], "plurality": ["Single(1)", "Twins(2)"],
               "mother_age": [22.4, 40.0], "gestation_weeks": [37.0, 41.6]}
    records = request_log.encode_columns(columns, [6.5, 7.75], 3, 1_800_000_000_000)
    instances = [{"is_male": "False", "plurality": "Single(1)", "mother_age": 22.4,
                  "gestation_weeks": 37.0},
                 {"is_male": "", "plurality": "Twins(2)", "mother_age": 40.0,
                  "gestation_weeks": 41.6}]
    assert records == [request_log.encode(i, p, 3, 1_800_000_000_000)
                       for i, p in zip(instances, [6.5, 7.75])]
    second = tf.train.Example.FromString(records[1]).features.feature
    assert second["is_male"].bytes_list.value == [features.IS_MALE.missing_value.encode()]
    assert second["gestation_weeks"].int64_list.value == [42]


def _example_of(row, prediction: float, version: int, millis: int) -> tf.train.Example:
    """tf.train.Example's own bytes for one row (the reference the cached encoder must give)."""
    example = tf.train.Example()
    feature = example.features.feature
    for declared in features.FEATURES:
        value = row[declared.name]
        if isinstance(declared, features.CategoricalFeature):
            feature[declared.name].bytes_list.value.append(value.encode())
        else:
            feature[declared.name].int64_list.value.append(int(round(value)))
    feature[request_log.PREDICTION_KEY].float_list.value.append(prediction)
    feature[request_log.VERSION_KEY].int64_list.value.append(version)
    feature[request_log.TIME_KEY].int64_list.value.append(millis)
    return example


def test_cached_rows_and_times_give_tf_examples_own_records():
    """The encoder reuses a row's entries and a time's high bytes: every time (either side of a
    128 ms step, small, negative, far off) and every repeat of a row still gives the record
    tf.train.Example would write."""
    rows = [INSTANCE, {**INSTANCE, "plurality": "Single(1)", "mother_age": 19.0}, INSTANCE]
    times = [0, 1, 127, 128, 129, 255, 256, 16_383, 16_384, -1, -129,
             1_800_000_000_000, 1_800_000_000_127, 1_800_000_000_128, 2**62]
    for millis in times:
        for version in (1, 300):
            columns = {name: [row[name] for row in rows] for name in features.FEATURE_NAMES}
            records = request_log.encode_columns(columns, [6.5, 7.75, 8.0], version, millis)
            for record, row, prediction in zip(records, rows, [6.5, 7.75, 8.0]):
                assert tf.train.Example.FromString(record) == _example_of(
                    row, prediction, version, millis), (millis, version, row)


def test_framed_records_are_the_bytes_tfrecordwriter_writes(tmp_path):
    """The log frames its records itself (one write per burst): the file is byte for byte the
    one tf.io.TFRecordWriter writes, checksums included."""
    records = [request_log.encode(INSTANCE, 7.0, 1, 1_800_000_000_000 + i) for i in range(3)]
    records.append(b"")
    with tf.io.TFRecordWriter(str(tmp_path / "reference")) as writer:
        for record in records:
            writer.write(record)
    assert (tmp_path / "reference").read_bytes() == request_log.framed(records)


class _Rounding(tf.Module):
    """serving_default's own conversion of the numeric inputs (modules/export.py), served."""

    def __init__(self) -> None:
        super().__init__()
        from modules import export

        def serve(request):
            raw = export.raw_features_from_request(request)
            return {f.name: tf.reshape(raw[f.name], [-1]) for f in features.NUMERIC_FEATURES}

        self.serve = tf.function(serve, input_signature=[export.raw_serving_specs()],
                                 autograph=False)


def test_logged_numbers_are_the_whole_numbers_the_model_computed_with(tmp_path):
    """A request's float reaches the model as float32 and is rounded half to even there: the
    log holds that number, not the float64's own rounding (26.5000001 is 26.5 in float32, 26
    for the model, 27 rounded as a float64), for columns and instances alike."""
    from serving import session_model

    module = _Rounding()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    _, signatures = session_model.load(str(tmp_path / "1"))
    edges = [26.5, 27.5, 26.5000001, 27.4999999, 26.4999999, 25.5000001, 38.5000001,
             39.4999999, 10.5, 17.5, 46.5, 59.5, 59.9999999, 26.49, 26.51, 26.0]
    columns = {"is_male": ["True"] * len(edges), "plurality": ["Single(1)"] * len(edges),
               "mother_age": edges, "gestation_weeks": edges[::-1]}
    served = signatures["serving_default"][0](columns)
    records = request_log.encode_columns(columns, [7.0] * len(edges), 1, 1_800_000_000_000)
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    assert records == [request_log.encode(row, 7.0, 1, 1_800_000_000_000) for row in rows]
    for name in ("mother_age", "gestation_weeks"):
        logged = [tf.train.Example.FromString(r).features.feature[name].int64_list.value[0]
                  for r in records]
        assert logged == served[name].tolist(), name
    assert served["mother_age"][2] == 26  # the case that tells the two roundings apart
