"""Property-based fuzzing of every operation in /openapi.json (schemathesis).

A bounded number of generated requests per operation, sent with a valid API key to
an app that has a dataset and a trained model. No request may answer 5xx, and every
response must match what the OpenAPI document says it returns.
"""

import dataclasses

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.usecases import keys
from tests.conftest import RecordingPublisher
from tests.support.data import mixed_csv
from tests.support.training import train_model

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    from service.config import Settings
    from service.db.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    upgrade(url)
    config = Settings.from_env({}, database_url=url, broker_url="memory://", auth="required")
    app = create_app(
        dataclasses.replace(config, max_upload_bytes=1_000_000), publisher=RecordingPublisher()
    )
    svc = app.extensions["trainserve"]
    _, key = keys.create_key(svc.database, "fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    train_model(app, csv=mixed_csv(60), hyperparameters={"epochs": 1}, headers=headers)
    app.fuzz_headers = headers
    yield app
    svc.close()


def operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    for result in schema.get_all_operations():
        yield result.ok()


def test_no_request_breaks_the_api_or_its_contract(fuzzed):
    """One hypothesis run per operation; failures name the operation and the request."""
    counts: dict[str, int] = {}
    for operation in operations(fuzzed):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case):
            response = case.call(headers=fuzzed.fuzz_headers)
            counts[case.operation.label] = counts.get(case.operation.label, 0) + 1
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        fuzz()
    total = sum(counts.values())
    print(f"\nfuzzed {len(counts)} operations with {total} generated requests, none 5xx")
    assert len(counts) >= 15 and total >= 15 * 5
