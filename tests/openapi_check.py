"""`python -m tests.openapi_check URL MODEL`: schemathesis against a running server, in a process
of its own.

Run inside pytest, importing schemathesis and hypothesis is several times dearer than their
use warrants: both are pytest plugins (pytest.ini turns them off), and pytest
rewrites the assertions of every module of a plugin's distribution on import, which it cannot
cache where bytecode is not written (PYTHONDONTWRITEBYTECODE). Here they are plain imports.
Prints one JSON line: the operations, the failures and the operations with nothing to make
invalid; tests/test_serving_security.py asserts on it.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Dict, List

# Per operation and mode: every operation gets this many valid requests and, where it has
# anything to make invalid, this many invalid ones. Generating invalid path parameters is most
# of the cost (hypothesis discards most of its draws there, and the cost grows with the count);
# each request is a few milliseconds.
EXAMPLES = 5


def check(url: str, model_name: str) -> Dict[str, Any]:
    """Every operation of url/openapi.json, valid and invalid requests, a fixed seed."""
    import schemathesis
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode, checks

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    selected = [checks.not_a_server_error, checks.status_code_conformance,
                checks.content_type_conformance, checks.response_headers_conformance,
                checks.response_schema_conformance, checks.negative_data_rejection]
    failures: Dict[str, str] = {}
    unconstrained: List[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @seed(14)
            @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                if mode == GenerationMode.POSITIVE and "model_name" in (case.path_parameters
                                                                        or {}):
                    # The served model's name: valid requests reach the model (a random name
                    # is a 404 before the body is read); negative cases keep theirs.
                    case.path_parameters["model_name"] = model_name
                case.call_and_validate(checks=selected, timeout=30)

            try:
                run()
            except Unsatisfiable:
                if mode == GenerationMode.POSITIVE:
                    failures[f"{operation.label} (positive)"] = "no valid request to generate"
                unconstrained.append(operation.label)  # nothing to make invalid (no inputs)
            except Exception as error:  # noqa: BLE001 - collected, reported together
                failures[f"{operation.label} ({mode.value})"] = str(error)[:2000]
    return {"operations": [operation.label for operation in operations],
            "failures": failures, "unconstrained": unconstrained}


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1], sys.argv[2])))
