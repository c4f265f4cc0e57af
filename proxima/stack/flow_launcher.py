"""Warm starts for flow runs: a fork server behind the process work pool.

A flow run of the process worker is a fresh ``python -m prefect.engine``: about
2.5 CPU-seconds of imports (Prefect, xarray, Dask, netCDF4) before the flow's first
line, the largest part of the time from a trigger to the regional subflows. The
stack therefore runs one long-lived *launcher* that has imported all of that once
(``serve``); the pool's job command is this module's ``launch``, which hands the
launcher its standard streams, working directory and environment. The launcher forks
a child that runs ``prefect.engine`` exactly as the worker would have, and reports
its exit code back. ``launch`` forwards TERM/INT/HUP to the child, so cancellation
and the worker's kill fallback reach the flow run; if the launcher is not running,
``launch`` becomes the cold ``python -m prefect.engine`` itself, so a run never
depends on it.

The launcher stays single-threaded (one ``selectors`` loop, children watched through
pidfds): forking a process whose other threads may hold locks is unsafe.

Usage (the stack does both)::

    python -m proxima.stack.flow_launcher serve SOCKET --preload MODULE [MODULE ...]
    python -m proxima.stack.flow_launcher launch SOCKET
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import warnings
from collections.abc import Sequence

_STREAMS = 3  # stdin, stdout, stderr
_LENGTH = struct.Struct("!I")
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        data += chunk
    return data


def _send_message(conn: socket.socket, message: dict) -> None:
    payload = json.dumps(message).encode()
    conn.sendall(_LENGTH.pack(len(payload)) + payload)


def _read_message(conn: socket.socket) -> dict:
    (size,) = _LENGTH.unpack(_read_exact(conn, _LENGTH.size))
    return json.loads(_read_exact(conn, size))


# --- the client: the work pool's job command -------------------------------------


def launch(socket_path: str) -> int:
    """Run the flow run named by this process's environment in a warm child.

    Returns:
        The child's exit code (what ``python -m prefect.engine`` would have returned).
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(socket_path)
    except OSError as err:
        conn.close()
        print(f"flow launcher not reachable ({err}); starting the flow run cold", file=sys.stderr)
        os.execv(sys.executable, [sys.executable, "-m", "prefect.engine"])
    with conn:
        socket.send_fds(conn, [b"R"], list(range(_STREAMS)))
        # the run's whole environment travels to the child as the worker set it (the
        # flow run id, the control channel, job variables), not as settings read here
        _send_message(conn, {"cwd": os.getcwd(), "env": dict(os.environ)})
        pid = _read_message(conn)["pid"]

        def forward(signum: int, _frame: object) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

        for signum in _FORWARDED:
            signal.signal(signum, forward)
        try:
            return int(_read_message(conn)["exit"])
        except ConnectionError:
            print("flow launcher stopped before the flow run ended", file=sys.stderr)
            return 1


# --- the server: the stack's launcher service -------------------------------------


def _run_child(conn: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: become ``python -m prefect.engine`` for this run; never returns."""
    code: object = 1
    try:
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (*_FORWARDED, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import prefect.context

        # Prefect (and ours, if a preloaded module read them) were read from the
        # launcher's environment, not the run's.
        prefect.context.refresh_global_settings_context()
        from proxima.settings import get_settings

        get_settings.cache_clear()
        sys.argv = ["prefect.engine"]
        # runpy's warning that the preloaded prefect.engine is re-run as __main__:
        # intended here; its module body only defines functions.
        warnings.filterwarnings("ignore", "'prefect.engine' found in sys.modules", RuntimeWarning)
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # the reader may be gone
                stream.flush()
    os._exit(code if isinstance(code, int) else 1)


class _Launcher:
    """The fork server's state: one listening socket and the children it started."""

    def __init__(self, socket_path: str) -> None:
        self.selector = selectors.DefaultSelector()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self.listener.listen(16)
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client)

    def _accept(self, _key: selectors.SelectorKey) -> None:
        conn, _ = self.listener.accept()
        try:
            _, fds, _, _ = socket.recv_fds(conn, 1, _STREAMS)
            if len(fds) != _STREAMS:  # a health check: connect and close
                for fd in fds:
                    os.close(fd)
                conn.close()
                return
            request = _read_message(conn)
        except (OSError, ValueError):
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            self.listener.close()
            for _, client in self.children.values():
                client.close()
            for pidfd in self.children:
                os.close(pidfd)
            _run_child(conn, fds, request)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, conn)
        self.selector.register(pidfd, selectors.EVENT_READ, self._reap)
        self.selector.register(conn, selectors.EVENT_READ, self._client_gone)
        run = request["env"].get("PREFECT__FLOW_RUN_ID", "?")
        print(f"flow run {run}: started warm as pid {pid}", flush=True)
        try:
            _send_message(conn, {"pid": pid})
        except OSError:
            os.kill(pid, signal.SIGTERM)

    def _reap(self, key: selectors.SelectorKey) -> None:
        pidfd = key.fd
        pid, conn = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        with contextlib.suppress(KeyError):  # unless _client_gone did already
            self.selector.unregister(conn)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        try:
            _send_message(conn, {"exit": os.waitstatus_to_exitcode(status)})
        except OSError:
            pass
        conn.close()

    def _client_gone(self, key: selectors.SelectorKey) -> None:
        """The worker killed ``launch`` (or it died): the run's process must go too."""
        conn = key.fileobj
        if conn.recv(1, socket.MSG_PEEK):  # type: ignore[union-attr]
            return
        self.selector.unregister(conn)
        for pid, client in self.children.values():
            if client is conn:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def serve_forever(self) -> None:
        while True:
            for key, _ in self.selector.select():
                key.data(key)


def serve(socket_path: str, preload: Sequence[str]) -> None:
    """Import ``preload`` once, then start a child per ``launch`` request, forever.

    Args:
        socket_path: Where to listen.
        preload: Modules to import; ``module:function`` also calls that function once
            (a warm-up whose caches every child then shares).

    Raises:
        RuntimeError: If importing ``preload`` started threads (forking would be unsafe).
    """
    for entry in preload:
        module, _, function = entry.partition(":")
        imported = importlib.import_module(module)
        if function:
            getattr(imported, function)()
    running = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if running:
        raise RuntimeError(f"preloading {list(preload)} started threads {running}; cannot fork")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    launcher = _Launcher(socket_path)
    print(f"flow launcher ready on {socket_path} ({len(preload)} modules preloaded)", flush=True)
    launcher.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``serve SOCKET --preload M ...`` or ``launch SOCKET``."""
    parser = argparse.ArgumentParser(prog="python -m proxima.stack.flow_launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    served = sub.add_parser("serve")
    served.add_argument("socket")
    served.add_argument("--preload", nargs="*", default=[])
    launched = sub.add_parser("launch")
    launched.add_argument("socket")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.socket, args.preload)
        return 0
    return launch(args.socket)


if __name__ == "__main__":
    sys.exit(main())
