"""POST /exports/estimate over HTTP: counts of the selection from counts alone, a size per
format and a duration; nothing started, nothing counted against the rate limit."""

from __future__ import annotations

from bson import ObjectId

from dataport.models.exports import ExportFormat
from dataport.packaging import estimate
from dataport.source.collections import PROJECTS
from dataport.source.mongo import connect
from infrastructure.local import seed
from tests.e2e.api_client import Api, seeded_dataset

DB_NAME = "dataport_estimate_tests"


dataset = seeded_dataset(DB_NAME, sessions_per_project=2)



def test_the_estimate_counts_what_the_export_then_holds(api: Api) -> None:
    answer = api.request("POST", "/exports/estimate", json={"format": "csv"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["format"] == "csv"
    counts = body["counts"]
    assert counts["projects"] == 3
    assert counts["sessions"] == 6
    assert body["packageBytesByFormat"] == {
        fmt.value: estimate.package_bytes(fmt, counts["messages"]) for fmt in ExportFormat}
    assert body["packageBytes"] == body["packageBytesByFormat"]["csv"]
    assert body["durationSeconds"] == estimate.duration_seconds(ExportFormat.CSV,
                                                                counts["messages"])
    assert api.request("GET", "/exports").json()["exports"] == []  # nothing was started

    job = api.wait(api.start_export({"format": "csv"}))
    assert job["counts"]["sessions"] == counts["sessions"]
    assert job["counts"]["messages"] == counts["messages"]
    assert job["counts"]["projects"] == counts["projects"]
    # the model is an order of magnitude: within a factor of two on the seeded data
    assert 0.5 < body["packageBytes"] / job["package"]["bytes"] < 2


def test_filters_narrow_the_estimate_and_bad_bodies_get_field_errors(
        api: Api, dataset: seed.SeedSummary) -> None:
    everything = api.request("POST", "/exports/estimate", json={}).json()["counts"]
    db = connect(api.stack.mongo_uri, DB_NAME)
    try:
        project = db[PROJECTS].find_one({"user_id": ObjectId(seed.DEMO_USER_ID)})
    finally:
        db.client.close()
    assert project is not None
    one = api.request("POST", "/exports/estimate",
                      json={"filters": {"projectIds": [str(project["_id"])]}}).json()["counts"]
    assert one["projects"] == 1
    assert 0 < one["sessions"] < everything["sessions"]
    assert one["messages"] < everything["messages"]

    bad = api.request("POST", "/exports/estimate", json={"format": "xlsx",
                                                         "filters": {"projectIds": ["x"]}})
    assert bad.status_code == 400
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert {"format", "filters.projectIds.0"} <= fields


def test_another_user_sees_only_their_own_counts(api: Api, dataset: seed.SeedSummary) -> None:
    newcomer = Api(api.stack, "66ad9b005f2b4a0012c0bbbb")  # no data
    counts = newcomer.request("POST", "/exports/estimate", json={}).json()["counts"]
    assert counts == {"projects": 0, "sessions": 0, "messages": 0}
