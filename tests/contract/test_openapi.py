"""The service's OpenAPI document, checked by an independent validator (openapi-spec-validator, OpenAPI 3.1).

`wrapup openapi` prints the document the service serves at /api/v1/openapi.json; the Rust test
`the_document_matches_its_snapshot` keeps docs/openapi.json equal to it, and this test validates both.
"""

import json
import os
import pathlib
import subprocess

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("WRAPUP_BIN", str(ROOT / "target" / "debug" / "wrapup"))


def generated():
    out = subprocess.run([BIN, "openapi"], check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def test_the_generated_document_is_valid_openapi_3_1():
    doc = generated()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_the_snapshot_is_the_generated_document_and_valid():
    snapshot = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert snapshot == generated(), "docs/openapi.json is stale: see the Rust test the_document_matches_its_snapshot"
    validate(snapshot, cls=OpenAPIV31SpecValidator)


def test_an_invalid_document_is_refused():
    # The validator is not a rubber stamp: a reference to a schema the document does not define is refused.
    doc = generated()
    doc["components"]["schemas"].pop("ErrorBody")
    try:
        validate(doc, cls=OpenAPIV31SpecValidator)
    except Exception:
        return
    raise AssertionError("the validator accepted a dangling reference")
