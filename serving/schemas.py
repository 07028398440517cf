"""OpenAPI schemas of the REST API, derived from modules/features.py.

The handlers read raw bodies (to enforce the size limit and give TF Serving's error shape), so
FastAPI cannot infer the request schemas; these are attached to the routes instead, and follow
the declaration: enums from vocabularies, minimum/maximum from the numeric ranges.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from modules import features
from serving import validation
from serving.settings import LimitsConfig


def _feature_schema(feature: features.Feature) -> Dict[str, Any]:
    """One feature's values exactly as serving/validation.py accepts them."""
    if isinstance(feature, features.CategoricalFeature):
        variants: List[Dict[str, Any]] = [{"type": "string", "enum": list(feature.vocabulary)}]
        if {features.IS_MALE_TRUE, features.IS_MALE_FALSE} <= set(feature.vocabulary):
            words = {"type": "string",  # "true"/"false" in any case, as the warehouse spells a BOOL
                     "pattern": "^\\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\\s*$"}
            variants += [{"type": "boolean"}, words]
        description = feature.description
        if not feature.required:
            variants += [{"type": "null"}, {"type": "string", "pattern": r"^\s*$"}]
            description += f" Optional: absent, null or '' means {feature.missing_value!r}."
        schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
        return {**schema, "description": description.strip()}
    return {"type": "number", "minimum": feature.min_value, "maximum": feature.max_value,
            "description": feature.description}


def instance_schema() -> Dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: _feature_schema(f) for f in features.FEATURES},
        "required": [f.name for f in features.FEATURES if f.required],
        "additionalProperties": False,
    }


def _example_schema() -> Dict[str, Any]:
    return {"type": "object", "required": ["b64"], "additionalProperties": False,
            "properties": {"b64": {"type": "string",
                                   "description": "A serialized tf.Example, base64"}}}


def _envelope(title: str, key: str, payload: Dict[str, Any], signature: Dict[str, Any],
              signature_required: bool) -> Dict[str, Any]:
    """One accepted body shape: exactly `key` (and signature_name), nothing else."""
    return {"title": title, "type": "object", "additionalProperties": False,
            "required": [key, "signature_name"] if signature_required else [key],
            "properties": {"signature_name": signature, key: payload}}


def predict_request_schema(limits: LimitsConfig) -> Dict[str, Any]:
    """A :predict body: row or columnar format, for the feature or the tf.Example signatures.

    The shapes exclude each other (`additionalProperties` false, one key each, disjoint
    signature names), so `oneOf` holds. One rule is not expressible here: the columnar
    format's lists must all be as long (a 400 names the one that is not).
    """
    rows = {"minItems": 1, "maxItems": limits.max_instances}
    columnar = {
        "type": "object",
        "properties": {f.name: {"type": "array", **rows, "items": _feature_schema(f)}
                       for f in features.FEATURES},
        "required": [f.name for f in features.FEATURES if f.required],
        "additionalProperties": False,
        "description": "One list per feature, all of the same length (one value per instance).",
    }
    by_features = {"type": "string", "enum": ["", validation.DEFAULT_SIGNATURE],
                   "default": validation.DEFAULT_SIGNATURE,
                   "description": "The signature taking the features ('' means it too)."}
    by_examples = {"type": "string", "enum": list(EXAMPLE_SIGNATURES),
                   "description": "Signatures taking serialized tf.Examples."}
    examples = {"type": "array", **rows, "items": _example_schema()}
    return {
        "oneOf": [
            _envelope("Row format", "instances",
                      {"type": "array", **rows, "items": instance_schema()}, by_features, False),
            _envelope("Columnar format", "inputs", columnar, by_features, False),
            _envelope("Row format, tf.Examples", "instances", examples, by_examples, True),
            _envelope("Columnar format, tf.Examples", "inputs",
                      {"anyOf": [examples, {"type": "object", "required": ["examples"],
                                            "additionalProperties": False,
                                            "properties": {"examples": examples}}]},
                      by_examples, True),
        ],
        "example": {"instances": [validation.sample_instance()]},
    }


# The exported model's signatures that take {"examples": [serialized tf.Example]}.
EXAMPLE_SIGNATURES = ("serving_tf_example", "transform_features")

_ERROR = {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"],
    "additionalProperties": False}}}


def _error(description: str, headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    result: Dict[str, Any] = {"description": description, "content": _ERROR}
    if headers:
        result["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                             for name, text in headers.items()}
    return result


def predict_openapi(limits: LimitsConfig) -> Dict[str, Any]:
    """`openapi_extra` for a :predict route: its request body and its success answer."""
    return {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": predict_request_schema(limits)}}},
        "responses": {
            "200": {"description": "Row format: {'predictions': [weight_pounds, ...]}; columnar "
                    "format: {'outputs': [weight_pounds, ...]} (one output tensor, so unnamed, "
                    "as TF Serving does).",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "415": _error("The body is not declared 'Content-Type: application/json'."),
        },
    }


def finish_openapi(spec: Dict[str, Any], token: bool) -> Dict[str, Any]:
    """Documents the answers every operation can give, as the server gives them.

    FastAPI documents a 422 it never sends here (request errors are TF Serving's 400s) and
    none of the 400/404/405/503 the handlers do send; this fixes both, types the version path
    segment and, with a token, declares the bearer scheme and its 401.
    """
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["400"] = _error("Malformed request: an invalid body, a version that is "
                                      "not ASCII digits fitting int64, or a Host header this "
                                      "loopback server does not answer.")
            responses["404"] = _error("Unknown model name or version, or no version served "
                                      "(the only one was deleted).")
            responses["405"] = _error("Wrong method for this path.",
                                      {"Allow": "The methods this path takes."})
            if path.startswith("/v1/") or path == "/healthz":
                responses["503"] = _error("No version has loaded yet.")
            if token:
                responses["401"] = _error("Missing or wrong bearer token.", {
                    "WWW-Authenticate": "The Bearer challenge."})
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "model_name" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "pattern": "^[^/:]+$",
                                           "title": "Model Name",
                                           "description": "No '/' or ':' (TF Serving's rule)."}
                if parameter.get("name") == "version" and parameter.get("in") == "path":
                    # 18 significant digits always fit int64; the server takes up to its max.
                    parameter["schema"] = {"type": "string", "pattern": "^0*[0-9]{1,18}$",
                                           "title": "Version",
                                           "description": "ASCII digits, at most int64's max."}
    spec.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    spec.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    if token:
        spec.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec
