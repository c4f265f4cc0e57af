"""Prefect automations the stack installs on its server.

Flow runs started by the work pool send a heartbeat every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (set in every stack client's
environment). A run whose process died (SIGKILL, OOM, a lost machine) stops sending
them; its parent may be marked Crashed by the worker, but its subflows would stay
Running in the UI for ever. This automation — Prefect's documented recipe for
self-hosted servers — marks any run silent for ``SILENT_AFTER_S`` as Crashed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

HEARTBEAT_S = 30  # Prefect's minimum
SILENT_AFTER_S = 75  # two missed heartbeats and some slack
ZOMBIES = "proxima-crash-zombie-flow-runs"


def zombie_automation() -> dict[str, Any]:
    """The automation, as the JSON body of ``POST /automations/``."""
    automation = AutomationCore(
        name=ZOMBIES,
        description="Mark flow runs Crashed when their heartbeats stop (a dead process).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENT_AFTER_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {SILENT_AFTER_S} s: the process running it died.",
            )
        ],
    )
    body: dict[str, Any] = automation.model_dump(mode="json")
    return body


def ensure_zombie_automation(api_url: str, auth: httpx.BasicAuth | None = None) -> bool:
    """Create the automation unless one with its name exists.

    Returns:
        Whether it was created now.
    """
    found = httpx.post(
        f"{api_url}/automations/filter",
        json={"automations": {"name": {"any_": [ZOMBIES]}}},
        timeout=10,
        auth=auth,
    )
    found.raise_for_status()
    if any(a["name"] == ZOMBIES for a in found.json()):
        return False
    httpx.post(
        f"{api_url}/automations/", json=zombie_automation(), timeout=10, auth=auth
    ).raise_for_status()
    return True
