"""EdaReport: writes the exploratory-analysis HTML report for each run, beside its other reports."""
import pathlib

from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import ExampleStatistics

from warehouse import engine


@component
def EdaReport(  # pylint: disable=invalid-name
    statistics: InputArtifact[ExampleStatistics],
    database: Parameter[str],
    report_path: Parameter[str],
    source: Parameter[str] = "",
) -> None:
    """The course's GROUP BY analysis on the warehouse plus TFDV's train-vs-eval view."""
    from reports import eda  # matplotlib and the page's code load when the report is written

    connection = engine.connect(pathlib.Path(database), source or None)
    try:
        eda.build_report(connection, pathlib.Path(report_path),
                         statistics_uri=statistics.uri)
    finally:
        connection.close()
