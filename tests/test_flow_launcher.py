"""The flow launcher (warm starts behind the process work pool), without the stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxima.stack.services import unix_socket_answers

LAUNCHER = [sys.executable, "-m", "proxima.stack.flow_launcher"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launcher(tmp_path):
    """A launcher serving on a socket in ``tmp_path``; yields (socket, its log)."""
    sock, log = tmp_path / "l.sock", tmp_path / "launcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*LAUNCHER, "serve", str(sock), "--preload", "prefect.engine"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not unix_socket_answers(sock):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield sock, log
    proc.terminate()
    proc.wait(10)


def _launch(sock: Path, run_id: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAUNCHER, "launch", str(sock)],
        env={**os.environ, "PREFECT__FLOW_RUN_ID": run_id},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_run_starts_in_a_warm_child_with_the_callers_streams_and_exit_code(launcher, tmp_path):
    sock, log = launcher
    done = _launch(sock, "not-a-flow-run-id", tmp_path)
    # prefect.engine ran in the launcher's child: its error reached the caller's
    # stderr through the passed descriptors, and its exit code came back
    assert done.returncode == 1
    assert "Invalid flow run id" in done.stderr
    assert "starting the flow run cold" not in done.stderr
    assert "flow run not-a-flow-run-id: started warm" in log.read_text()
    again = _launch(sock, "still-not-an-id", tmp_path)  # the launcher serves run after run
    assert again.returncode == 1 and "Invalid flow run id" in again.stderr


def test_without_a_launcher_the_run_starts_cold(tmp_path):
    done = _launch(tmp_path / "nobody-listens.sock", "not-a-flow-run-id", tmp_path)
    assert "starting the flow run cold" in done.stderr
    assert done.returncode == 1 and "Invalid flow run id" in done.stderr


def test_preloading_what_starts_threads_is_refused(tmp_path):
    module = tmp_path / "threaded_module.py"
    module.write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    )
    done = subprocess.run(
        [*LAUNCHER, "serve", str(tmp_path / "l.sock"), "--preload", "threaded_module"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "started threads" in done.stderr and "cannot fork" in done.stderr


def test_a_preload_may_name_a_warm_up_that_runs_once_before_any_child(tmp_path):
    """``module:function`` imports the module and calls the function in the launcher:
    what it loads (a font cache, a first plot) every child then shares."""
    module = tmp_path / "warm_module.py"
    marker = tmp_path / "warmed"
    module.write_text(
        "from pathlib import Path\n"
        f"MARKER = Path({str(marker)!r})\n"
        "def warm():\n"
        "    MARKER.write_text(str(int(MARKER.read_text()) + 1) if MARKER.exists() else '1')\n"
    )
    sock, log = tmp_path / "l.sock", tmp_path / "launcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*LAUNCHER, "serve", str(sock), "--preload", "prefect.engine", "warm_module:warm"],
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not unix_socket_answers(sock):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        _launch(sock, "not-a-flow-run-id", tmp_path)
        assert marker.read_text() == "1"  # once, in the launcher, not again in the child
        assert "(2 modules preloaded)" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_warm_up_builds_what_each_forked_run_would_build_for_itself():
    """Prefect defers building its client models until first use: without the warm-up,
    every forked run built them again on its first API calls."""
    probe = (
        "import pydantic, prefect.engine, flows.cross_region_analysis\n"
        "from flows import prefect_clients\n"
        "def incomplete():\n"
        "    out, todo = [], [pydantic.BaseModel]\n"
        "    while todo:\n"
        "        for m in todo.pop().__subclasses__():\n"
        "            todo.append(m)\n"
        "            if m.__module__.startswith('prefect') and not m.__pydantic_complete__:\n"
        "                out.append(m.__name__)\n"
        "    return out\n"
        "before = incomplete()\n"
        "prefect_clients.warm_up()\n"
        "print(len(before), 'FlowRun' in before, len(incomplete()),\n"
        "      prefect_clients._context.cache_info().currsize)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    before, flow_run_deferred, after, contexts = out.stdout.split()
    assert int(before) > 0 and flow_run_deferred == "True"
    assert int(after) == 0 and int(contexts) == 1
