"""The cell store: one JSON record per finished cell, reused only if its fingerprint matches.

Why: an interrupted stage resumes where it stopped, a changed setting (or code) reruns only the
cells it touches, and two runs that reach one cell (two stages, Ray workers on a shared
filesystem) compute it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from .errors import ConfigError
from .utils import read_json, write_json


def fingerprint(*parts) -> str:
    """A short hash of everything a cell's result depends on (settings, data, backbone, code)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CellStore:
    """One JSON per finished cell; a cell is reused only if its fingerprint matches."""

    def __init__(self, root, paper: str, method: str):
        self.dir = Path(root) / paper / method
        blocked = next((p for p in [self.dir, *self.dir.parents] if p.exists() and not p.is_dir()), None)
        if blocked is not None:  # checked now, before any cell is computed that could not be stored
            raise ConfigError(f"the cell store {self.dir} cannot be created: {blocked} is a file; point data.runs in params.yaml at a folder")
        self.served: list = []  # every record this run used (reused or new), selection cells included
        self.trained = self.reused = 0  # cells (selection cells included) computed now / found finished

    def compute_time_s(self) -> float:
        """Seconds the served cells took when they were computed (a reused cell counts its first run)."""
        return sum(float(r.get("wall_time_s", 0.0)) for r in self.served)

    def _path(self, cell: str) -> Path:
        return self.dir / f"{cell.replace('/', '_')}.json"

    def get(self, cell: str, fingerprint: str):
        path = self._path(cell)
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path} is a folder where cell {cell!r}'s record belongs; remove it and run again")
        if path.is_file():
            try:
                rec = read_json(path)
            except (ValueError, OSError):  # truncated, zero-filled or not text: recomputed
                return None
            if rec.get("fingerprint") == fingerprint:
                self.served.append(rec)
                self.reused += 1
                return rec
        return None

    @contextlib.contextmanager
    def lock(self, cell: str):
        """Hold ``cell``'s lock while computing it: a second run (another stage, a Ray worker on a
        shared filesystem) that reaches the same cell waits, then reuses the record. An OS file
        lock (``flock``): the kernel releases it when its holder dies, so a killed run leaves no
        stale lock. The lock file names the holder."""
        path = self.dir / "locks" / f"{cell.replace('/', '_')}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                print(f"[{self.dir.parent.name}/{self.dir.name}] {cell}: waiting for {f.read().strip() or 'another process'}, which is computing it", flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            f.write(f"PID {os.getpid()} on {socket.gethostname()}")
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def compute(self, cell: str, fingerprint: str, make) -> tuple[dict, bool]:
        """``(record, reused)``: the finished record, else ``make()`` stored under the cell's lock."""
        rec = self.get(cell, fingerprint)
        if rec is not None:
            return rec, True
        with self.lock(cell):
            rec = self.get(cell, fingerprint)  # finished by another run while this one waited
            if rec is not None:
                return rec, True
            return self.put(cell, fingerprint, make()), False

    def put(self, cell: str, fingerprint: str, record: dict) -> dict:
        record = {**record, "cell": cell, "fingerprint": fingerprint, "computed_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        write_json(self._path(cell), record)
        self.served.append(record)
        self.trained += 1
        return record

    def checkpoint(self, cell: str, fingerprint: str) -> Path:
        """The running cell's epoch checkpoint, named by its fingerprint: an interrupted run with the
        same settings resumes from it; one left by other settings is deleted, never resumed."""
        d, name = self.dir / "checkpoints", cell.replace("/", "_")
        path = d / f"{name}@{fingerprint}.pt"
        for old in d.glob(f"{name}@*.pt"):
            if old != path:
                old.unlink()
        return path
