"""The prediction page: the course's "Flask + App Engine" web app, served by the REST server.

  GET /        the form (sex, mother's age, plurality, gestation weeks) and its answers
  GET /ui/...  the page's own script, style sheet and icon (nothing comes from the network)

The page is rendered once, server-side, from modules/features.py: every option's value is a
vocabulary entry and every numeric input's min/max is the declared range, so the browser's
limits and the server's validation cannot disagree. The page's script then calls this server's
own `POST /v1/models/{name}:predict` (one instance for the answer, one batched call of the
what-if weeks for the chart), reads the version that answered from the `X-Model-Version`
header, and shows a 400's `{"error": "instances[0].<feature>: ..."}` next to that feature's field.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re
import urllib.parse
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import jinja2
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from modules import features

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/ui"
STATIC_FILES = ("app.js", "style.css", "favicon.svg")

# The response header that names the model version that answered a :predict (serving/app.py).
VERSION_HEADER = "X-Model-Version"
# The "what if" strip: these gestation weeks (clipped to the declared range), one batched call.
WHAT_IF_FEATURE = features.GESTATION_WEEKS
WHAT_IF_WEEKS = (28, 42)

# Presentation only: labels and units for the declared features and values. Values themselves
# always come from the declaration; a value without a label here shows as itself.
FIELD_ORDER = (features.IS_MALE.name, features.MOTHER_AGE.name, features.PLURALITY.name,
               features.GESTATION_WEEKS.name)
FIELD_LABELS = {features.IS_MALE.name: "Baby's sex", features.MOTHER_AGE.name: "Mother's age",
                features.PLURALITY.name: "Plurality",
                features.GESTATION_WEEKS.name: "Gestation"}
UNITS = {features.MOTHER_AGE.name: "years", features.GESTATION_WEEKS.name: "weeks"}
VALUE_LABELS = {
    features.IS_MALE_TRUE: "Male",
    features.IS_MALE_FALSE: "Female",
    features.IS_MALE_UNKNOWN: "Unknown (no ultrasound)",
    features.PLURALITY_MULTIPLE_UNKNOWN: "Multiple, unknown count",
}
HINTS = {features.IS_MALE.name: "Pick \u201cunknown\u201d without an ultrasound.",
         features.PLURALITY.name: "Number of babies born at once."}
# What a person most often enters (the course's example request).
DEFAULTS: Dict[str, Union[str, int]] = {
    features.IS_MALE.name: features.IS_MALE_TRUE,
    features.MOTHER_AGE.name: 26,
    features.PLURALITY.name: features.PLURALITY_NAMES[0],
    features.GESTATION_WEEKS.name: 39,
}
# Categorical features with this many values or fewer are radio buttons, others a <select>.
MAX_RADIOS = 3
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")


@dataclasses.dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclasses.dataclass(frozen=True)
class Field:
    """One form field, as the template draws it."""

    name: str
    label: str
    widget: str  # "radio", "select" or "number"
    default: str
    hint: str = ""
    options: Tuple[Option, ...] = ()
    min_value: Optional[int] = None
    max_value: Optional[int] = None
    unit: str = ""


def value_label(value: str) -> str:
    """'Twins(2)' -> 'Twins'; the explicit VALUE_LABELS first."""
    return VALUE_LABELS.get(value) or re.sub(r"\s*\(\d+\)$", "", value) or value


def field(feature: features.Feature) -> Field:
    """The form field for a declared feature: options or limits straight from the declaration."""
    label = FIELD_LABELS.get(feature.name, feature.name.replace("_", " ").capitalize())
    if isinstance(feature, features.CategoricalFeature):
        default = str(DEFAULTS.get(feature.name, feature.missing_value or feature.vocabulary[0]))
        if default not in feature.vocabulary:
            raise ValueError(f"default {default!r} of {feature.name} is not in its vocabulary")
        return Field(feature.name, label,
                     "radio" if len(feature.vocabulary) <= MAX_RADIOS else "select", default,
                     HINTS.get(feature.name, ""),
                     tuple(Option(v, value_label(v)) for v in feature.vocabulary))
    default_number = DEFAULTS.get(feature.name, round((feature.min_value + feature.max_value) / 2))
    if not feature.min_value <= int(default_number) <= feature.max_value:
        raise ValueError(f"default {default_number} of {feature.name} is outside the declared "
                         f"range {feature.min_value}..{feature.max_value}")
    unit = UNITS.get(feature.name, "")
    return Field(feature.name, label, "number", str(default_number),
                 f"{feature.min_value}\u2013{feature.max_value} {unit}".strip(),
                 min_value=feature.min_value, max_value=feature.max_value, unit=unit)


def fields(declared: Sequence[features.Feature] = features.FEATURES) -> List[Field]:
    """Every declared feature's field: FIELD_ORDER first, any other declared feature after."""
    rank = {name: i for i, name in enumerate(FIELD_ORDER)}
    ordered = sorted(declared, key=lambda f: rank.get(f.name, len(rank)))
    return [field(f) for f in ordered]


def what_if_weeks() -> List[int]:
    low = max(WHAT_IF_WEEKS[0], WHAT_IF_FEATURE.min_value)
    high = min(WHAT_IF_WEEKS[1], WHAT_IF_FEATURE.max_value)
    return list(range(low, high + 1))


def _asset_urls() -> Dict[str, str]:
    """/ui/<file>?v=<content hash>: a changed asset is never taken from a stale cache."""
    return {name: f"{STATIC_PREFIX}/{name}?v="
            f"{hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]}"
            for name in STATIC_FILES}


def render_page(model_name: str) -> str:
    """The page's HTML for `model_name` (autoescaped)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     trim_blocks=True, lstrip_blocks=True)
    quoted = urllib.parse.quote(model_name, safe="")
    return environment.get_template("index.html").render(
        model_name=model_name,
        # Relative URLs: the page also works behind a proxy that serves it under a prefix.
        predict_url=f"v1/models/{quoted}:predict",
        fields=fields(),
        what_if_feature=WHAT_IF_FEATURE.name,
        what_if_weeks=what_if_weeks(),
        version_header=VERSION_HEADER,
        assets={name.split(".")[0]: url for name, url in _asset_urls().items()},
    )


def install(app: FastAPI, model_name: str) -> None:
    """Adds `GET /` (the page, rendered once) and mounts the static assets under /ui."""
    page = render_page(model_name).encode()
    headers: Mapping[str, str] = {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                  "X-Content-Type-Options": "nosniff",
                                  "Cache-Control": "no-cache"}

    @app.get("/", tags=["prediction page"], response_class=HTMLResponse,
             summary="The prediction web page: a form that calls :predict on this server")
    async def prediction_page() -> HTMLResponse:
        return HTMLResponse(page, headers=dict(headers))

    app.mount(STATIC_PREFIX, StaticFiles(directory=str(STATIC_DIR)), name="ui")
