"""The AWS import path: an FSx IMPORT_METADATA_FROM_REPOSITORY task, started and awaited.

FSx for Lustre cannot run here and moto does not implement data repository tasks, so
the FSx API is answered by botocore's Stubber with the documented response shapes;
everything else (request parameters, polling, failure handling) is the real code.
"""

import boto3
import pytest
from botocore.stub import Stubber

from proxima.repository import ImportFailed, fsx_import, import_region
from tests.regions import era5_region

REGION = era5_region(fsx_file_system_id="fs-0123456789abcdef0")


def _task(lifecycle, **extra):
    return {
        "DataRepositoryTasks": [
            {
                "TaskId": "task-0123456789ab",
                "Lifecycle": lifecycle,
                "Type": "IMPORT_METADATA_FROM_REPOSITORY",
                "CreationTime": "2026-01-01T00:00:00Z",
                "FileSystemId": REGION.fsx_file_system_id,
                **extra,
            }
        ]
    }


def _stubbed(*lifecycles, failure=None):
    client = boto3.client(
        "fsx", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    stub.add_response(
        "create_data_repository_task",
        {"DataRepositoryTask": _task("PENDING")["DataRepositoryTasks"][0]},
        {
            "FileSystemId": REGION.fsx_file_system_id,
            "Type": "IMPORT_METADATA_FROM_REPOSITORY",
            "Paths": ["/era5-pds"],
            "Report": {"Enabled": False},
        },
    )
    for lifecycle in lifecycles:
        extra = {"Status": {"TotalCount": 10, "SucceededCount": 10, "FailedCount": 0}}
        if lifecycle == "FAILED" and failure:
            extra = {"FailureDetails": {"Message": failure}}
        stub.add_response(
            "describe_data_repository_tasks",
            _task(lifecycle, **extra),
            {"TaskIds": ["task-0123456789ab"]},
        )
    stub.activate()
    return client, stub


def test_fsx_task_is_started_and_awaited():
    client, stub = _stubbed("PENDING", "EXECUTING", "SUCCEEDED")
    out = fsx_import(REGION, ["/era5-pds"], poll_s=0, fsx_client=client)
    assert out["lifecycle"] == "SUCCEEDED" and out["status"]["SucceededCount"] == 10
    stub.assert_no_pending_responses()


def test_fsx_task_failure_names_region_and_reason():
    client, _ = _stubbed("EXECUTING", "FAILED", failure="repository access denied")
    with pytest.raises(ImportFailed, match="us-east-1 FAILED: repository access denied"):
        fsx_import(REGION, ["/era5-pds"], poll_s=0, fsx_client=client)


def test_fsx_task_timeout_is_reported():
    client, _ = _stubbed("EXECUTING")
    with pytest.raises(ImportFailed, match="still EXECUTING"):
        fsx_import(REGION, ["/era5-pds"], poll_s=0, timeout_s=0, fsx_client=client)


def test_region_without_fsx_id_never_calls_fsx(tmp_path):
    local = REGION.model_copy(
        update={"fsx_file_system_id": None, "s3_endpoint": "http://127.0.0.1:1"}
    )
    with pytest.raises(ImportFailed, match="import of s3://era5-pds in us-east-1"):
        import_region(local, tmp_path)
