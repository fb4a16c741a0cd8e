"""Export packages keep the promise users were given: re-download from the history for
PackageRetentionDays (30) days. The package's expiry, the history row's TTL and the bucket's
lifecycle rule agree; the download route answers by the request's time (the stack's clock)."""

from __future__ import annotations

from datetime import timedelta

from dataport.settings import get_settings
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, job_row, seeded_dataset
from tests.fixtures.environment import template
from tests.schedules.support import utc

DB_NAME = "dataport_package_retention"


dataset = seeded_dataset(DB_NAME, sessions_per_project=1)


def test_the_template_promises_thirty_days_and_the_history_holds_them() -> None:
    parameters = template().parameters  # the defaults, as a deployment without overrides
    assert int(parameters["PackageRetentionDays"]) == 30
    assert int(parameters["PackageRetentionDays"]) <= int(parameters["JobRetentionDays"])
    assert get_settings().package_retention_days == 30


def test_a_package_downloads_from_the_history_for_thirty_days(
        fresh_stack: LocalStack, dataset: seed.SeedSummary) -> None:
    api = Api(fresh_stack, seed.DEMO_USER_ID)
    job = api.wait(api.start_export({"format": "json"}))
    assert job["status"] == "succeeded"
    finished, expires = utc(job["finishedAt"]), utc(job["package"]["expiresAt"])
    assert timedelta(days=30) - timedelta(minutes=1) <= expires - finished <= timedelta(days=30)
    # the history keeps the job 30 days after it was made: the package's whole life
    history_ends = int(job_row(fresh_stack, job["jobId"])["expires_at"]["N"])
    assert history_ends >= int((utc(job["createdAt"]) + timedelta(days=30)).timestamp())

    rules = fresh_stack.client("s3").get_bucket_lifecycle_configuration(
        Bucket=fresh_stack.bucket)["Rules"]
    (packages,) = [r for r in rules if r["Filter"].get("Prefix") == "packages/"]
    assert packages["Expiration"]["Days"] == 30  # S3 deletes no sooner (rounded up to midnight)

    fresh_stack.clock.set(expires - timedelta(minutes=5))
    assert api.request("GET", f"/exports/{job['jobId']}/download").status_code == 302
    fresh_stack.clock.set(expires + timedelta(minutes=1))
    gone = api.request("GET", f"/exports/{job['jobId']}/download")
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "gone"
