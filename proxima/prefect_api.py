"""Prefect's REST API over the standard library's HTTP client, for a process that
submits a run and follows it without importing Prefect (the CLI: Prefect's client is
~1 CPU-second to import, most of what a ``proxima analyze`` call cost).

Only the server's public endpoints are used: a deployment by name, a flow run created
from it, flow runs, their state histories and logs, and the event stream (``events/
out``, the websocket Prefect's own ``wait_for_flow_run`` listens to). The run's summary is its
persisted result: the analysis flow persists it with Prefect's JSON serializer, and
its state's data names the file (``storage_key``); a result kept anywhere else
(a storage block) is not read here, and says so.
"""

from __future__ import annotations

import json
import time
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib import error, request

from websockets import exceptions as ws_exceptions
from websockets.sync import client as ws_client
from websockets.typing import Subprotocol

from proxima.errors import ProximaError

ANALYSIS_DEPLOYMENT = "cross-region-analysis/cross-region-analysis"  # prefect.yaml's
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
PROGRESS = "progress"  # the first word of the regional tasks' progress lines


class PrefectAPI:
    """A client of one Prefect server.

    Args:
        url: The API's URL (``.../api``).
        auth: ``PREFECT_API_AUTH_STRING`` (``user:password``), if the server wants one.
        timeout: Seconds for each request.
    """

    def __init__(self, url: str, auth: str | None = None, timeout: float = 30.0) -> None:
        self._base = url.rstrip("/") + "/"
        self._auth = auth
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            self._headers["Authorization"] = f"Basic {b64encode(auth.encode()).decode()}"
        self._timeout = timeout

    def __enter__(self) -> PrefectAPI:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        asked = request.Request(self._base + path, data, self._headers, method=method)
        try:
            with request.urlopen(asked, timeout=self._timeout) as response:
                return json.loads(response.read())
        except error.HTTPError as exc:
            if exc.code == 404:
                raise LookupError(path) from None
            raise ProximaError(
                f"the Prefect API refused {method} {path}: {exc.code} "
                f"{exc.read()[:500].decode(errors='replace')}"
            ) from None
        except (OSError, ValueError) as exc:  # URLError is an OSError
            raise ProximaError(f"the Prefect API at {self._base} did not answer: {exc}") from exc

    def create_run(
        self, deployment: str, parameters: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A flow run of ``flow-name/deployment-name`` (the same run again for a key
        already used, as Prefect deduplicates per deployment).

        Raises:
            ProximaError: the deployment is not registered with this server.
        """
        try:
            found = self._call("GET", f"deployments/name/{deployment}")
        except LookupError:
            raise ProximaError(
                f"no deployment {deployment} on this Prefect server: run `proxima deploy` "
                "(or `proxima analyze --here` to run in this process)"
            ) from None
        body: dict[str, Any] = {"parameters": parameters}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        run: dict[str, Any] = self._call("POST", f"deployments/{found['id']}/create_flow_run", body)
        return run

    def run(self, run_id: str) -> dict[str, Any]:
        """The flow run as the server has it now."""
        found: dict[str, Any] = self._call("GET", f"flow_runs/{run_id}")
        return found

    def wait(self, run_id: str) -> dict[str, Any]:
        """The flow run once it is in a final state, told by the server's event stream
        (what ``prefect.flow_runs.wait_for_flow_run`` listens to: no polling load on the
        server, and the end is seen at once); by polling its state if the stream
        cannot be opened.
        """
        try:
            with self._events(run_id) as stream:
                run = self.run(run_id)  # it may have ended before the stream opened
                while _state_type(run) not in FINAL:
                    try:
                        message = json.loads(stream.recv(timeout=30))
                    except TimeoutError:  # quiet for long: look at the run itself
                        run = self.run(run_id)
                        continue
                    if message.get("type") != "event":
                        continue
                    kind = message["event"].get("resource", {}).get("prefect.state-type")
                    if kind in FINAL:
                        run = self._until_final(run_id)
            return run
        except (OSError, ws_exceptions.WebSocketException):
            return self._until_final(run_id, poll_s=0.2)

    def _events(self, run_id: str) -> ws_client.ClientConnection:
        """The server's event stream, authenticated and filtered to the run's events."""
        url = self._base.replace("http", "ws", 1) + "events/out"
        headers = {"Authorization": self._headers["Authorization"]} if self._auth else None
        stream = ws_client.connect(
            url, subprotocols=[Subprotocol("prefect")], additional_headers=headers, open_timeout=10
        )
        stream.send(json.dumps({"type": "auth", "token": self._auth}))
        reply = json.loads(stream.recv(timeout=10))
        if reply.get("type") != "auth_success":
            stream.close()
            raise ProximaError(f"the Prefect event stream refused this client: {reply}")
        now = time.time()
        wanted = {
            "event": {"prefix": ["prefect.flow-run."]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            "occurred": {"since": _iso(now - 60), "until": _iso(now + 365 * 86400)},
        }
        stream.send(json.dumps({"type": "filter", "filter": wanted}))
        return stream

    def _until_final(self, run_id: str, poll_s: float = 0.1) -> dict[str, Any]:
        """Read the run until the API shows it final (an event may arrive first),
        backing off to once a second.
        """
        while True:
            run = self.run(run_id)
            if _state_type(run) in FINAL:
                return run
            time.sleep(poll_s)
            poll_s = min(poll_s * 2, 1.0)

    def follow(
        self, run_id: str, say: Callable[[str], None], poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Wait for the run to end, saying each state of it and of its subflows (by their
        flows' names, ``analyze-<region>``) and their progress lines.
        """
        states_said: set[str] = set()
        lines_said: set[str] = set()
        flow_names: dict[str, str] = {}
        since: str | None = None
        ending = False
        while True:
            run = self.run(run_id)
            of_run = {"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}
            children = self._call("POST", "flow_runs/filter", of_run)
            for child in children:
                if child["flow_id"] not in flow_names:
                    flow = self._call("GET", f"flows/{child['flow_id']}")
                    flow_names[child["flow_id"]] = flow["name"]
            subflows = sorted((flow_names[c["flow_id"]], c["id"]) for c in children)
            labelled = [("run", run_id), *subflows]
            for label, of in labelled:
                history = self._call("GET", f"flow_run_states/?flow_run_id={of}")
                for state in sorted(history, key=lambda s: s["timestamp"]):
                    if state["id"] not in states_said:
                        states_said.add(state["id"])
                        say(f"{label}: {state['name']}")
            logs_filter: dict[str, Any] = {
                "flow_run_id": {"any_": [run_id, *(c["id"] for c in children)]}
            }
            if since:
                logs_filter["timestamp"] = {"after_": since}
            logs = self._call("POST", "logs/filter", {"logs": logs_filter, "sort": "TIMESTAMP_ASC"})
            for log in logs:
                since = max(since, log["timestamp"]) if since else log["timestamp"]
                if log["id"] not in lines_said and log["message"].startswith(PROGRESS):
                    lines_said.add(log["id"])
                    say(log["message"].removeprefix(PROGRESS).strip())
            if ending:
                return run
            # one more look once it ended: the regions flush their last lines before
            ending = _state_type(run) in FINAL
            if not ending:
                time.sleep(poll_s)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _state_type(run: dict[str, Any]) -> str | None:
    state = run.get("state") or {}
    kind: str | None = state.get("type")
    return kind


def result(run: dict[str, Any]) -> Any:
    """The value a completed run returned, read from its persisted result file.

    Raises:
        ProximaError: the run kept no result this process can read (not persisted, in a
            storage block, not JSON, or the file gone).
    """
    data = (run.get("state") or {}).get("data") or {}
    key, serializer = data.get("storage_key"), (data.get("serializer") or {}).get("type")
    if not key or data.get("storage_block_id") or serializer != "json":
        raise ProximaError(
            f"the run {run.get('name')} completed but kept no JSON result file here "
            f"(its result: {json.dumps(data)[:300]})"
        )
    try:
        value = json.loads(Path(key).read_text())
        if isinstance(value, dict) and set(value) == {"metadata", "result"}:
            value = json.loads(value["result"])  # a record: metadata and result in one file
        return value
    except (OSError, ValueError) as exc:
        raise ProximaError(
            f"the run {run.get('name')} completed but its result {key} cannot be read: {exc}"
        ) from exc
