"""Whole-result reuse: the same request on the same assets is answered by the result it
produced before, without touching a cluster.

A result is keyed by the request as validated (bbox wrapped to -180..180, dates parsed,
fields in their model's order) without what only names or guards the output, and by
the plan: every asset each region would read with the catalog's stamp of it (size,
mtime, ctime, ETag) and its unit conversion. Any asset added, removed, superseded or
rewritten changes the plan once the catalog has seen it, and so the key. The entry also
holds the SHA-256 of the result it points to: a result replaced or damaged since is
not served.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from proxima.analysis.kernels import KERNEL_VERSION
from proxima.analysis.plan import Plan
from proxima.analysis.request import AnalysisRequest
from proxima.analysis.results import output_path
from proxima.reuse.store import digest

INDEX_DIR = ".reuse"  # under the results directory
# What names, guards or routes the output, not what it holds.
NOT_THE_QUESTION = {"output_name", "overwrite", "dry_run", "reuse", "allow_partial"}
NOT_THE_DATA = {"max_out_bytes"}


def request_key(request: AnalysisRequest, plan: Plan) -> str:
    """The key of ``request`` answered on ``plan``'s assets."""
    data = [
        {
            "role": s.role,
            "regions": [
                {"region": r.region, "spec": r.spec.model_dump(mode="json", exclude=NOT_THE_DATA)}
                for r in s.regions
            ],
        }
        for s in plan.selections
    ]
    asked = request.model_dump(mode="json", exclude=NOT_THE_QUESTION)
    return digest({"request": asked, "plan": data, "kernel": KERNEL_VERSION})


def _sha256(path: Path) -> str:
    """SHA-256 of a file, or of a directory tree's relative names and contents (Zarr)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def _entry(results_dir: Path, key: str, name: str | None) -> Path:
    """Where the answer to ``key`` is kept: under its output name when the request gave
    one (a named result is served only as itself), else the latest of any name.
    """
    return results_dir / INDEX_DIR / (f"{key}-{name}.json" if name else f"{key}.json")


def lookup(request: AnalysisRequest, plan: Plan, results_dir: Path) -> dict[str, Any] | None:
    """The summary of the stored answer to ``request`` on ``plan``, marked as served from
    its run; None when there is none (under the request's output name, if it names one),
    reuse is off, or the stored result is gone or changed (its entry is then dropped).
    """
    if not request.reuse:
        return None
    entry = _entry(results_dir, request_key(request, plan), request.output_name)
    try:
        stored = json.loads(entry.read_text())
    except (FileNotFoundError, ValueError):
        return None
    path = Path(stored["result_path"])
    if request.output_name:
        wanted = output_path(results_dir, request.output_name, request.output_format)
        if wanted.resolve() != path.resolve():
            return None
    try:
        intact = _sha256(path) == stored["result_sha256"]
    except OSError:
        intact = False
    if not intact:
        entry.unlink(missing_ok=True)
        return None
    summary: dict[str, Any] = stored["summary"]
    summary.update(
        served_from={"run": stored["run"], "because": "assets unchanged"},
        bytes_read=0,
        bytes_crossed_regions=0,
        blocks={},
        regions=[],
        footprint={"served_from": stored["run"]},  # this request computed and moved nothing
    )
    return summary


def record(
    request: AnalysisRequest, plan: Plan, summary: dict[str, Any], run: str, results_dir: Path
) -> None:
    """Keep ``summary`` (a complete answer written at its ``result_path``) for the next
    identical request, unnamed or of the same output name. A partial answer (a region
    missing) is never kept.
    """
    if summary.get("missing_regions"):
        return
    key = request_key(request, plan)
    body = {
        "run": run,
        "result_path": summary["result_path"],
        "result_sha256": _sha256(Path(summary["result_path"])),
        "summary": summary,
    }
    names = {None, request.output_name}
    for entry in (_entry(results_dir, key, name) for name in names):
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as out:
            json.dump(body, out, default=str)
        os.replace(tmp, entry)
