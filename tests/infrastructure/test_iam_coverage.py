"""Every AWS call a function really makes is allowed by that function's policy in template.yaml.

The local stack records each boto3 call per function while real flows run (an encrypted export,
download, delete, cancel, a failure, API-key auth); each call is turned into the IAM action and
resource AWS would authorize and checked against the template's statements, resources included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dataport.auth import create_api_key
from dataport.settings import get_settings
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_database
from tests.fixtures.faults import EXPORT_WORKER, export_worker, slow_writer
from tests.infrastructure.iam import assert_calls_allowed


def test_every_call_is_covered_by_the_functions_policy(
        fresh_stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = fresh_stack
    with seeded_database(monkeypatch, stack, "dataport_iam_tests", sessions_per_project=2):
        api = Api(stack, seed.DEMO_USER_ID)
        job_id = api.start_export({"format": "json",  # sealed password: kms calls too
                                   "options": {"encryption": {"password": "iam-test-pass"}}})
        with ProgressSocket(stack.ws_url, stack.token_for(seed.DEMO_USER_ID)) as socket:
            socket.subscribe(job_id)  # fan-out: ManageConnections calls too
            events = [event.type for event in socket.follow(job_id, timeout=60)]
        assert api.wait(job_id)["status"] == "succeeded", events
        api.download(job_id, tmp_path / "package.zip")
        api.request("GET", "/exports")
        assert api.request("DELETE", f"/exports/{job_id}").json()["status"] == "deleted"

        key = create_api_key(seed.DEMO_USER_ID, "iam test")
        assert api.request("GET", "/exports",
                           headers={"Authorization": f"ApiKey {key}"}).status_code == 200

        slow, writing = slow_writer(0.2)
        with monkeypatch.context() as patch:
            patch.setitem(stack.handler_overrides, EXPORT_WORKER, export_worker(slow))
            patch.setenv("PAGE_SIZE", "1")
            get_settings.cache_clear()
            cancelled = api.start_export({"format": "csv"})
            assert writing.wait(20)  # cancelled mid-write
            assert api.request("DELETE", f"/exports/{cancelled}").json()["status"] == "cancelled"
            stack.wait_until_quiet()  # the running worker noticed and cleaned up after itself

        with monkeypatch.context() as patch:
            patch.setitem(stack.handler_overrides, EXPORT_WORKER, export_worker(_explode))
            failed = api.start_export({"format": "jsonl"})
            assert api.wait(failed)["status"] == "failed"
        get_settings.cache_clear()

    seen = {d.call.logical_id for d in stack.call_details}
    assert {"ApiFunction", "AuthorizerFunction", "ExportPlanFunction", "ExportWorkerFunction",
            "ExportFinalizeFunction", "JobFailedFunction", "WsSubscribeFunction"} <= seen
    assert any(d.call.service == "apigatewaymanagementapi" for d in stack.call_details)
    kms = {(d.call.logical_id, d.call.operation) for d in stack.call_details
           if d.call.service == "kms"}
    assert kms == {("ApiFunction", "Encrypt"), ("ExportPlanFunction", "Decrypt"),
                   ("ExportWorkerFunction", "Decrypt"), ("ExportFinalizeFunction", "Decrypt")}
    assert_calls_allowed(stack)


def _explode(*_: Any, **__: Any) -> Any:
    raise RuntimeError("boom")
