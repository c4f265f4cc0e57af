"""A region's store of per-block partial aggregates, kept next to its data.

An entry is a pickle framed by a magic and the SHA-256 of the payload, named by the
SHA-256 of what determined it (``kernels.block_identities``). An entry that does not
verify (truncated, bit-flipped, half-written by a crash) is deleted and reported as
``corrupt``, and the block is computed again: a stored partial is used whole or not at
all. Writes go to a temporary file renamed into place, so a reader never sees a partial
entry and two workers computing the same block leave one whole entry.

Only Proxima's regional workers write the store, inside the region's own file system,
the same trust the workers already give the pickled tasks their scheduler sends them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MAGIC = b"PXPARTIAL1\n"
DIGEST = 32
STORE_DIR = ".proxima/partials"  # under the region root, beside the refresh's snapshots
DEFAULT_MAX_BYTES = 4 * 2**30

Status = Literal["reused", "computed", "corrupt"]


def digest(identity: dict[str, Any]) -> str:
    """The key of ``identity``: SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class Entry(BaseModel):
    """One stored partial, as ``ls`` lists it."""

    key: str
    bytes: int
    used_ns: int = Field(description="Last written or reused (the LRU clock).")


class PartialStore(BaseModel):
    """The partial store of one region (picklable: it travels to that region's workers).

    Args:
        directory: Where the entries live (``<region root>/.proxima/partials``).
        max_bytes: Size cap; the least recently used entries go first.
        read: False computes every block afresh (``reuse: false``) but still stores it.
    """

    directory: str
    max_bytes: int = DEFAULT_MAX_BYTES
    read: bool = True

    @classmethod
    def of_region(
        cls, root: str, max_bytes: int = DEFAULT_MAX_BYTES, read: bool = True
    ) -> PartialStore:
        """The store of the region whose file system is mounted at ``root``."""
        return cls(directory=str(Path(root) / STORE_DIR), max_bytes=max_bytes, read=read)

    def _path(self, key: str) -> Path:
        return Path(self.directory) / key[:2] / key

    def get(self, identity: dict[str, Any]) -> tuple[Any | None, Status]:
        """The stored partial for ``identity``, or None with why (not there, or corrupt)."""
        if not self.read:
            return None, "computed"
        path = self._path(digest(identity))
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, "computed"
        body = raw[len(MAGIC) + DIGEST :]
        ok = (
            raw.startswith(MAGIC)
            and raw[len(MAGIC) : len(MAGIC) + DIGEST] == hashlib.sha256(body).digest()
        )
        if not ok:
            path.unlink(missing_ok=True)
            return None, "corrupt"
        os.utime(path)  # the LRU clock: a reused entry is young again
        return pickle.loads(body), "reused"

    def put(self, identity: dict[str, Any], value: Any) -> None:
        """Store ``value`` for ``identity`` whole (temporary file, then rename), then evict
        the least recently used entries beyond the cap.
        """
        body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        path = self._path(digest(identity))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + hashlib.sha256(body).digest() + body)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict()

    def entries(self) -> list[Entry]:
        """Every entry, oldest use first."""
        found = []
        base = Path(self.directory)
        if not base.is_dir():
            return []
        for shard in os.scandir(base):
            if not shard.is_dir():
                continue
            for item in os.scandir(shard.path):
                if item.name.startswith(".tmp-"):
                    continue
                try:
                    st = item.stat()
                except FileNotFoundError:  # evicted or replaced meanwhile
                    continue
                found.append(Entry(key=item.name, bytes=st.st_size, used_ns=st.st_mtime_ns))
        return sorted(found, key=lambda e: e.used_ns)

    def evict(self) -> list[str]:
        """Delete the least recently used entries until the store fits its cap."""
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        gone = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            self._path(entry.key).unlink(missing_ok=True)
            total -= entry.bytes
            gone.append(entry.key)
        return gone

    def clear(self) -> int:
        """Delete every entry; how many there were."""
        entries = self.entries()
        for entry in entries:
            self._path(entry.key).unlink(missing_ok=True)
        return len(entries)
