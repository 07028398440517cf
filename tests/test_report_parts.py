"""The report pages' parts on their own: the browser harness, the script policy, the threshold
checks, the hyperparameters shown, and the commands' help, with no pipeline run needed."""
from __future__ import annotations

import json
import pathlib
import time
from typing import List

import pytest

from tests.report_checks import browser  # noqa: F401  (the module's Chromium fixture)
from tests.report_checks import assert_script_by_hash_only, visit


def test_unreachable_warehouse_is_a_note_not_an_error(tmp_path):
    from reports import data_section

    views, note = data_section.mean_weight_views((str(tmp_path / "gone.duckdb"), None))
    assert views == {} and "not reachable" in note


def test_help_names_every_command(capsys):
    from reports import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("run", "index", "compare"):
        assert command in text
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--latest", "--run-id ID", "--no-index", "--metadata-path SQLITE",
                 "--pipeline-root DIR", "--out DIR", "--no-warehouse", "--verbose"):
        assert flag in text, flag


def test_the_shared_options_are_the_settings_of_every_command() -> None:
    from reports import cli
    from common.config import from_flags

    for argv in (["run", "--latest"], ["index", "--rebuild"], ["compare", "A", "B"]):
        parsed = cli.parser().parse_args([*argv, "--no-warehouse", "--out", "/tmp/pages"])
        settings = from_flags(cli.ReportsSettings, parsed)
        assert settings == cli.ReportsSettings(out=pathlib.Path("/tmp/pages"), warehouse=False)
        assert settings.metadata_path == cli.DEFAULTS.metadata_path


# What loading the reports package must leave unloaded: these libraries' imports cost seconds
# each, and only the building of a run's page (or the reading of its metrics) needs them.
HEAVY_LIBRARIES = ("tensorflow", "tensorflow_data_validation", "tensorflow_model_analysis",
                   "tensorflow_transform", "tfx", "apache_beam")

# Runs in a fresh interpreter (this one has TensorFlow loaded by other tests): imports the
# reports modules, asks each command for its help, and prints the heavy libraries now loaded.
_IMPORT_PROBE = """
import contextlib, io
import reports.cli, reports.publisher
for argv in (["--help"], ["run", "--help"], ["index", "--help"], ["compare", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        reports.cli.main(argv)
"""


def heavy_libraries_after(code: str, *args: str) -> List[str]:
    """The HEAVY_LIBRARIES loaded once `code` has run in a fresh interpreter (with `args` as
    its sys.argv[1:]) in the project's root; `code` must succeed."""
    import subprocess
    import sys

    report = ("\nimport json, sys\n"
              f"print(json.dumps([n for n in {HEAVY_LIBRARIES!r} if n in sys.modules]))\n")
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code + report, *args], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_reports_modules_and_help_import_no_heavy_library():
    """`python -m reports ... --help` and importing the publisher (as every command does before
    it reads a store) stay cheap: TensorFlow and the TFX libraries load only when used."""
    assert heavy_libraries_after(_IMPORT_PROBE) == []


def test_the_browser_harness_sees_network_use_and_errors(browser, tmp_path):
    """Guards the checks above: a page that reaches out or throws must not pass as clean."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="https://example.com/pixel.png">'
                    '<script>undefinedFunction()</script>')
    with visit(browser, page) as seen:
        # Browser events reach Python asynchronously: wait for them, not for a fixed time.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                seen.blocked_requests and seen.console_errors):
            seen.page.wait_for_timeout(50)
        assert seen.blocked_requests == ["https://example.com/pixel.png"]
        assert any("undefinedFunction" in error for error in seen.console_errors)
        with pytest.raises(AssertionError):
            seen.assert_clean()


def test_pages_run_their_script_and_no_injected_one(browser, tmp_path):
    """The sorting script runs under the page's policy; an inline script slipped in does not."""
    from reports.pages import environment

    html = environment().from_string(
        '{% extends "base.html.j2" %}{% block body %}<table class="sortable" id="t"><thead>'
        '<tr><th><button>n</button></th></tr></thead><tbody class="rows">'
        '<tr><td data-value="2">2</td></tr><tr><td data-value="1">1</td></tr></tbody></table>'
        '<script>document.title = "injected";</script>{% endblock %}').render(title="csp")
    page_path = tmp_path / "csp.html"
    page_path.write_text(html)
    with visit(browser, page_path) as seen:
        seen.page.locator("#t th button").click()
        assert seen.page.locator("#t td").all_inner_texts() == ["1", "2"]
        assert seen.page.title() == "csp"
        assert any("Content Security Policy" in e for e in seen.console_errors)
        assert not seen.blocked_requests and not seen.failed_requests
    assert_script_by_hash_only(html.split('Content-Security-Policy" content="')[1].split('"')[0])


def test_threshold_checks_say_what_decided():
    from pipelines.config import EvaluationConfig
    from pipelines.evaluation import eval_config
    from reports.evaluation_results import SliceMetrics
    from reports.facts import threshold_checks, thresholds_of

    config = eval_config(EvaluationConfig(rmse_upper_bound=1.1, max_rmse_increase=0.01,
                                          gate_slices=True))
    metrics = [SliceMetrics("Overall", 100, 1.05, 0.8),
               SliceMetrics("plurality=Twins(2)", 5, 1.4, 1.0),
               SliceMetrics("plurality=Single(1)", 95, 1.0, 0.8),
               SliceMetrics("mother_age=<18", 10, 0.9, 0.7)]
    checks = threshold_checks(thresholds_of(config), metrics)
    bound, change = (c for c in checks if c.where == "overall" and "RMSE" in c.rule)
    assert bound.rule == "RMSE at most 1.1 lb" and bound.passed and bound.value == 1.05
    # No baseline: the change threshold is shown as not applied, not as passed.
    assert "last blessed" in change.rule and change.passed is None
    twins = next(c for c in checks if c.where.startswith("worst slice of plurality"))
    assert twins.where.endswith("(plurality=Twins(2))")
    assert twins.passed is False and twins.value == 1.4

    outside = next(c for c in checks if "possible weights" in c.rule)
    assert outside.passed is None  # these metrics do not say how many were impossible
    impossible = [SliceMetrics("Overall", 100, 1.05, 0.8, outside_label_range=2.0)]
    outside = next(c for c in threshold_checks(thresholds_of(config), impossible)
                   if "possible weights" in c.rule)
    assert outside.passed is False and outside.value == 2.0 and outside.where == "overall"

    with_baseline = [SliceMetrics("Overall", 100, 1.05, 0.8, baseline_rmse=1.0)]
    change = next(c for c in threshold_checks(thresholds_of(config), with_baseline)
                  if "last blessed" in c.rule)
    # 1.05 - 1.0 is exact in binary floating point (Sterbenz: within a factor 2 of each other).
    assert change.passed is False and change.value == 1.05 - 1.0


def _tfma_failures(config, rmse: float, change: float, outside: float) -> set:
    """The metrics TFMA's own validator fails on the overall slice, given these values."""
    from tensorflow_model_analysis.evaluators import metrics_validator
    from tensorflow_model_analysis.metrics import metric_specs

    keys = metric_specs.metric_thresholds_from_metrics_specs(config.metrics_specs,
                                                            eval_config=config)
    values = {key: change if key.is_diff else rmse if "squared" in key.name else outside
              for key in keys}
    result = metrics_validator.validate_metrics(((), values), config)
    return {(f.metric_key.name, f.metric_key.is_diff)
            for per_slice in result.metric_validations_per_slice for f in per_slice.failures}


@pytest.mark.parametrize("rmse_offset, change_offset, outside", [
    (0, 0, 0.0), (1, 0, 0.0), (0, 1, 0.0), (0, 0, 1.0), (-1, -1, 0.0)])
def test_threshold_checks_pass_at_the_bounds_as_tfma_does(rmse_offset, change_offset, outside):
    """Equal to a bound passes (TFMA: upper_bound is <=, lower_bound >=, the change <=), one
    ulp past it fails, and the report says the same as TFMA's validator on the same values."""
    import math

    from pipelines.config import EvaluationConfig
    from pipelines.evaluation import eval_config
    from reports.evaluation_results import SliceMetrics
    from reports.facts import threshold_checks, thresholds_of

    bound, allowed = 1.15, 0.25
    config = eval_config(EvaluationConfig(rmse_upper_bound=bound, max_rmse_increase=allowed))
    toward = {-1: -math.inf, 0: 0.0, 1: math.inf}
    rmse = math.nextafter(bound, bound + toward[rmse_offset])
    # A baseline `allowed` under the candidate (exact: 0.25 is a power of two and the
    # difference keeps rmse's last bit), then one ulp further from or nearer to it. The
    # report's change, rmse - baseline, is exact too (Sterbenz: within a factor 2).
    at_bound = rmse - allowed
    assert rmse - at_bound == allowed
    baseline = math.nextafter(at_bound, at_bound - toward[change_offset])
    change = rmse - baseline
    overall = SliceMetrics("Overall", 100, rmse, 0.8, baseline_rmse=baseline,
                           outside_label_range=outside)
    checks = threshold_checks(thresholds_of(config), [overall])
    by_rule = {c.rule.split(" (")[0]: c for c in checks}
    assert set(by_rule) == {f"RMSE at most {bound:g} lb",
                            f"RMSE at most {allowed:g} lb above the last blessed model's",
                            "at most 0 predictions outside the possible weights"}
    assert by_rule[f"RMSE at most {bound:g} lb"].passed is (rmse_offset <= 0)
    assert by_rule[f"RMSE at most {allowed:g} lb above the last blessed model's"].passed is \
        (change_offset <= 0)
    assert by_rule["at most 0 predictions outside the possible weights"].passed is \
        (outside == 0)
    failed = _tfma_failures(config, rmse, change, outside)
    assert failed == {key for key, passed in [
        (("root_mean_squared_error", False), rmse_offset <= 0),
        (("root_mean_squared_error", True), change_offset <= 0),
        (("predictions_outside_label_range", False), outside == 0)] if not passed}


def test_the_slice_chart_draws_the_rmse_bound_not_the_change_allowance():
    from pipelines.config import EvaluationConfig
    from pipelines.evaluation import eval_config
    from reports import facts, model_section
    from reports.evaluation_results import SliceMetrics

    config = eval_config(EvaluationConfig(rmse_upper_bound=1.15, max_rmse_increase=0.01))
    checks = facts.threshold_checks(facts.thresholds_of(config), [
        SliceMetrics("Overall", 100, 1.0, 0.8, baseline_rmse=1.0)])
    run = facts.RunFacts(record=None, status="succeeded", succeeded=True,
                         checks=checks[::-1])  # the change's rule first: it must not match
    assert model_section.overall_bound(run) == 1.15


def test_a_lower_bound_passes_when_met():
    """TFMA's lower_bound means metric >= bound: equal passes, one ulp under fails."""
    import math

    import tensorflow_model_analysis as tfma
    from google.protobuf import wrappers_pb2

    from reports.evaluation_results import SliceMetrics
    from reports.facts import threshold_checks

    threshold = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
        lower_bound=wrappers_pb2.DoubleValue(value=0.5)))
    thresholds = [("RootMeanSquaredError", "overall", threshold)]
    for rmse, passed in [(0.5, True), (math.nextafter(0.5, 0), False)]:
        check, = threshold_checks(thresholds, [SliceMetrics("Overall", 100, rmse, 0.8)])
        assert check.rule == "RMSE at least 0.5 lb" and check.passed is passed, rmse


def test_tuned_hyperparameters_override_the_configured_ones(tmp_path):
    from modules.hparams import HyperParameters, search_space
    from reports import facts

    tuned = search_space(HyperParameters())
    tuned.values["hidden_units"] = "128,64"
    tuned.values["learning_rate"] = 0.02
    (tmp_path / facts.BEST_HYPERPARAMETERS_FILE).write_text(json.dumps(tuned.get_config()))
    best = facts._read_best(str(tmp_path))
    run = facts.RunFacts(record=None, status="succeeded", succeeded=True,
                         hyperparameters=HyperParameters().to_dict(), tuned_hyperparameters=best)
    assert run.effective_hyperparameters["hidden_units"] == "128,64"
    assert run.effective_hyperparameters["learning_rate"] == 0.02
    assert run.effective_hyperparameters["epochs"] == HyperParameters().epochs


def test_the_model_card_says_what_each_split_was_for_and_a_training_cap():
    from reports import model_card

    read = "spans 196901-200812 (480 months, 100000 rows of the table) sha256:0123"
    train = model_card._split_description("train", 145_754, {"num_train_examples": 5000}, read)
    assert train.startswith("145,754 examples, the model fitted on (its first 5,000 ")
    assert train.endswith(f"ExampleGen read the table's {read}, of which the training query "
                          "keeps its own rows")
    uncapped = model_card._split_description("train", 145_754, {"num_train_examples": 0}, read)
    assert "first" not in uncapped
    assert "chosen on" in model_card._split_description("test", 10, {}, read)
    assert model_card._split_description("eval", 10, {}, "") == (
        "10 examples, the model gated and measured on (above)")
    assert "chosen on and gated on" in model_card._split_description("eval", 10, {}, "", False)


def test_the_model_card_names_the_tuner_only_for_a_run_that_had_one():
    import datetime

    from reports import facts, mlmd, model_card

    at = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)

    def card(*nodes: str) -> dict:
        components = [mlmd.ComponentRun(n, n, "COMPLETE", at, at, {}, {}, {}) for n in nodes]
        run = facts.RunFacts(record=mlmd.RunRecord("r", "babyweight", at, components),
                             status="succeeded", succeeded=True,
                             split_sizes={"train": 80, "test": 10, "eval": 10})
        built = model_card.build(run, None)["model_parameters"]["data"]
        return {d["name"]: d["description"] for d in built}

    untuned = card("Trainer")["test split"]
    assert untuned == "10 examples, the model chosen on (early stopping)"
    tuned = card(facts.TUNER_NODE, "Trainer")["test split"]
    assert tuned == "10 examples, the model chosen on (early stopping, the Tuner)"
