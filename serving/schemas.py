"""OpenAPI schemas of the REST API, derived from modules/features.py.

The handlers read raw bodies (to enforce the size limit and give TF Serving's error shape), so
FastAPI cannot infer the request schemas; these are attached to the routes instead, and follow
the declaration: enums from vocabularies, minimum/maximum from the numeric ranges.
"""
from __future__ import annotations

from typing import Any, Dict

from modules import features
from serving import validation
from serving.settings import LimitsConfig


def _feature_schema(feature: features.Feature) -> Dict[str, Any]:
    if isinstance(feature, features.CategoricalFeature):
        schema: Dict[str, Any] = {"type": "string", "enum": list(feature.vocabulary)}
        if {features.IS_MALE_TRUE, features.IS_MALE_FALSE} <= set(feature.vocabulary):
            words = {"type": "string",  # "true"/"false" in any case, as the warehouse spells a BOOL
                     "pattern": "^\\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])\\s*$"}
            schema = {"anyOf": [schema, {"type": "boolean"}, words]}
        description = feature.description
        if not feature.required:
            description += f" Optional: absent, null or '' means {feature.missing_value!r}."
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


def predict_request_schema(limits: LimitsConfig) -> Dict[str, Any]:
    columnar = {
        "type": "object",
        "properties": {f.name: {"type": "array", "items": _feature_schema(f)}
                       for f in features.FEATURES},
        "required": [f.name for f in features.FEATURES if f.required],
        "additionalProperties": False,
    }
    signature = {"type": "string", "default": validation.DEFAULT_SIGNATURE,
                 "description": "Signature to run; serving_tf_example and transform_features "
                 "take {'b64': <serialized tf.Example>} values instead of features."}
    return {
        "oneOf": [
            {"title": "Row format", "type": "object", "required": ["instances"],
             "properties": {"signature_name": signature,
                            "instances": {"type": "array", "minItems": 1,
                                          "maxItems": limits.max_instances,
                                          "items": instance_schema()}}},
            {"title": "Columnar format", "type": "object", "required": ["inputs"],
             "properties": {"signature_name": signature, "inputs": columnar}},
        ],
        "example": {"instances": [validation.sample_instance()]},
    }


def predict_openapi(limits: LimitsConfig) -> Dict[str, Any]:
    """`openapi_extra` for a :predict route: its request body and its answers."""
    error = {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}
    return {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": predict_request_schema(limits)}}},
        "responses": {
            "200": {"description": "Row format: {'predictions': [weight_pounds, ...]}; columnar "
                    "format: {'outputs': [weight_pounds, ...]} (one output tensor, so unnamed, "
                    "as TF Serving does).",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"description": "The request is invalid; the message names the field.",
                    "content": error},
            "404": {"description": "Unknown model name or version.", "content": error},
            "503": {"description": "No version is loaded yet.", "content": error},
        },
    }
