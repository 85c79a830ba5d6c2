"""Downloads and archives for the paper profile: checksummed, resumable, atomic.

Rules every dataset file follows:

* :func:`fetch` writes to ``<dest>.part`` and renames to ``<dest>`` only after the size and the
  checksum (md5 and/or sha256, whichever is known) match. An interrupted download leaves only the
  ``.part`` file, which the next call resumes with an HTTP ``Range`` request; a finished download
  whose checksum does not match is deleted and reported, never used. A file already at ``dest``
  is re-verified before it is trusted.
* :func:`extract` unpacks into a temporary folder beside the destination and moves the result into
  place only when the whole archive has been read without error, so a truncated or corrupt archive
  (tar/gzip/zip errors, CRC mismatches) raises :class:`ArchiveError` and leaves nothing behind.
* Network failures (offline, DNS, refused, timeouts) raise :class:`DownloadError` within seconds:
  one attempt with a short socket timeout, no retry loop.
* :class:`ManualDownloadRequired` carries everything a person needs to fetch a file by hand
  (URL, file name, size, checksum, where to put it); it is raised before anything is written.

All error types derive from :class:`~visprompt.errors.ConfigError`, so the CLI prints them as one
clean message.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

SOCKET_TIMEOUT_S = 15.0  # per blocking socket operation; a dead network fails at once (DNS) or after this
CHUNK = 1 << 20
USER_AGENT = "visprompt-data/1 (+https://github.com; research dataset download)"


class DownloadError(ConfigError):
    """A download could not be made (network, HTTP error, size mismatch)."""


class ChecksumError(ConfigError):
    """A file's size or checksum does not match the published value."""


class ArchiveError(ConfigError):
    """An archive is truncated, corrupt or unsafe to extract."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as published: where it is, what it is called, how to check it.

    ``dest`` is the folder (relative to the data root) where the file must end up; ``extract_to``
    (relative to the data root) is where its contents go when it is an archive (``None``: the file
    is used as it is, e.g. a ``.mat`` annotation file).
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # exact bytes, when published
    approx_size: str = ""  # human-readable, e.g. "~1.1 GB"
    dest: str = "downloads"
    extract_to: str | None = None
    inner: tuple = ()  # archives inside the archive to unpack too: (relative path, extract_to) pairs

    def checksum_text(self) -> str:
        parts = []
        if self.md5:
            parts.append(f"md5 {self.md5}")
        if self.sha256:
            parts.append(f"sha256 {self.sha256}")
        return ", ".join(parts) or "no published checksum (its sha256 is recorded in the manifest at first use)"

    def size_text(self) -> str:
        if self.size:
            return f"{self.size:,} bytes"
        return self.approx_size or "size not published"


class ManualDownloadRequired(ConfigError):
    """A dataset file must be fetched by a person (licence click-through or no public URL).

    Attributes: ``dataset``, ``url``, ``filename``, ``size``, ``checksum``, ``destination`` (of the
    first missing file) and ``files`` (every missing file as a dict), ``reason``.
    """

    def __init__(self, dataset: str, files: list[RemoteFile], root, reason: str = "", homepage: str = "", note: str = "", rerun: str = ""):
        root = Path(root)
        self.dataset = dataset
        self.reason = reason
        self.files = [
            {
                "url": f.url,
                "filename": f.filename,
                "size": f.size_text(),
                "checksum": f.checksum_text(),
                "destination": str(root / f.dest / f.filename),
            }
            for f in files
        ]
        first = self.files[0] if self.files else {"url": homepage, "filename": "", "size": "", "checksum": "", "destination": str(root)}
        self.url = first["url"]
        self.filename = first["filename"]
        self.size = first["size"]
        self.checksum = first["checksum"]
        self.destination = first["destination"]
        lines = [f"dataset {dataset!r} needs a manual download" + (f" ({reason})" if reason else "") + "."]
        if homepage:
            lines.append(f"  homepage: {homepage}")
        for i, f in enumerate(self.files, 1):
            lines.append(f"  {i}. download {f['filename']} from {f['url']}")
            lines.append(f"     size: {f['size']}; {f['checksum']}")
            lines.append(f"     put it at: {f['destination']}")
            for elsewhere in _misplaced(root, f["filename"], Path(f["destination"])):
                lines.append(f"     found {elsewhere}, which is not where it is read: move it there")
        if note:
            lines.append(f"  note: {note}")
        lines.append("  then run the data stage again" + (f": {rerun}" if rerun else "") + "; nothing was written for this dataset.")
        super().__init__("\n".join(lines))


def _misplaced(root: Path, filename: str, destination: Path) -> list[Path]:
    """A manual download put in the data root itself or in its ``downloads/`` folder (the usual
    mistakes) instead of its destination: those copies, so the message can say to move them."""
    return [p for p in (root / filename, root / "downloads" / filename) if p != destination and p.is_file()] if filename else []


# --- hashing ------------------------------------------------------------------------------------


def file_hashes(path, algos=("md5", "sha256")) -> dict:
    """Hex digests of ``path`` for each algorithm in one pass."""
    hs = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for h in hs.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hs.items()}


def verify(path, md5: str | None = None, sha256: str | None = None, size: int | None = None) -> dict:
    """Check size and checksums of ``path``; returns ``{'size', 'md5', 'sha256'}``.

    Raises :class:`ChecksumError` naming the expected and the actual values.
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path} has {actual_size:,} bytes, expected {size:,} (truncated or a different file)")
    digests = file_hashes(path)
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want and digests[algo].lower() != want.lower():
            raise ChecksumError(f"{path}: {algo} is {digests[algo]}, expected {want} (corrupt or a different version of the file)")
    return {"size": actual_size, **digests}


# --- fetching -----------------------------------------------------------------------------------


def _open(url: str, start: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        req.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(req, timeout=timeout)


def _network_hint(url: str, dest: Path, reason, md5=None, sha256=None, size=None) -> str:
    check = ", ".join(x for x in (f"{size:,} bytes" if size else "", f"md5 {md5}" if md5 else "", f"sha256 {sha256}" if sha256 else "") if x)
    return (
        f"could not download {url} ({reason}). This needs internet access; on an offline machine, download the file "
        f"elsewhere{f' ({check})' if check else ''} and put it at {dest} (a .part file beside it, if any, is resumed on the next run)."
    )


def fetch(
    url: str,
    dest,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = SOCKET_TIMEOUT_S,
    progress=None,
) -> dict:
    """Download ``url`` to ``dest`` (resumable, verified, atomic); return ``{'path', 'size', 'md5', 'sha256'}``.

    * ``dest`` exists: it is verified (size/checksums when known) and returned; if it fails, it is
      deleted and downloaded again.
    * ``dest.part`` exists: the download resumes from its length (HTTP Range); a server that ignores
      the range restarts from zero.
    * On a network error the ``.part`` file is kept for resuming and :class:`DownloadError` is raised.
    * When complete: wrong size or checksum → the partial file is deleted, :class:`ChecksumError`.
    ``progress``: optional callable ``(done_bytes, total_bytes_or_None)``.
    """
    dest = Path(dest)
    if dest.is_file():
        try:
            return {"path": str(dest), **verify(dest, md5, sha256, size)}
        except ChecksumError:
            dest.unlink()  # a corrupt file is never used: fetch it again
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    if size is not None and start == size:
        resp = None  # already complete, only the rename was missing
    else:
        try:
            resp = _open(url, start, timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:  # range not satisfiable: the part is complete (or bogus); verify below
                resp = None
            else:
                raise DownloadError(_network_hint(url, dest, f"HTTP {e.code} {e.reason}", md5, sha256, size)) from e
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(_network_hint(url, dest, reason, md5, sha256, size)) from e
    if resp is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with resp:
            status = getattr(resp, "status", None) or resp.getcode()
            mode = "ab" if (start and status == 206) else "wb"
            done = start if mode == "ab" else 0
            length = resp.headers.get("Content-Length")
            total = (int(length) + done) if length and length.isdigit() else size
            try:
                with open(part, mode) as f:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
                raise DownloadError(_network_hint(url, dest, f"interrupted after {done:,} bytes: {e}", md5, sha256, size)) from e
            if total is not None and done < total:
                raise DownloadError(_network_hint(url, dest, f"connection closed after {done:,} of {total:,} bytes", md5, sha256, size))
    try:
        info = verify(part, md5, sha256, size)
    except ChecksumError as e:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"download of {url} failed verification and was deleted: {e}") from e
    os.replace(part, dest)
    return {"path": str(dest), **info}


# --- archives -----------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip", ".gz")


def archive_kind(path) -> str | None:
    name = Path(path).name.lower()
    for s in ARCHIVE_SUFFIXES:
        if name.endswith(s):
            return {".tgz": ".tar.gz", ".tbz2": ".tar.bz2", ".txz": ".tar.xz"}.get(s, s)
    return None


def _safe_target(base: Path, member: str, archive: Path, what: str = "member") -> Path:
    """Where ``member`` lands under ``base``; an entry that would land outside it (``../``, an
    absolute path, a link pointing out) stops the extraction, naming the archive, not ``base`` (a
    temporary folder that is deleted)."""
    target = (base / member).resolve()
    if base.resolve() not in target.parents and target != base.resolve():
        raise ArchiveError(f"{archive}: {what} {member!r} points outside the folder it is extracted to; refusing to extract an archive "
                           "that could overwrite other files: check its checksum and get it again from its source")
    return target


MAX_EXPANSION = 50  # the real datasets' archives hold JPEGs, PNGs and arrays: at most a few times their size
MIN_CAP_BYTES = 4 << 30


class _Cap:
    """Bytes an archive may expand to: ``MAX_EXPANSION`` × its size, at least ``MIN_CAP_BYTES``.
    A zip bomb (a small archive of a huge, highly compressible file) stops here instead of
    filling the disk."""

    def __init__(self, archive: Path, max_expansion: float | None = None, min_bytes: int | None = None):
        ratio = MAX_EXPANSION if max_expansion is None else max_expansion
        self.archive, self.left = archive, max(int(ratio * archive.stat().st_size), MIN_CAP_BYTES if min_bytes is None else min_bytes)
        self.limit = self.left

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ArchiveError(f"{self.archive} expands beyond {self.limit / 2**30:.1f} GB (over {MAX_EXPANSION}× its size): "
                               "refusing to extract what looks like a decompression bomb; check the file's checksum and source")


def _copy_capped(src, out, cap: _Cap) -> None:
    while chunk := src.read(CHUNK):
        cap.take(len(chunk))
        out.write(chunk)


def _extract_tar(archive: Path, tmp: Path, cap: _Cap) -> None:
    with tarfile.open(archive, mode="r:*") as tf:
        for m in tf:  # reading every member header and body surfaces truncation inside the archive
            if m.issym() or m.islnk():
                _safe_target(tmp, os.path.join(os.path.dirname(m.name), m.linkname), archive, f"link {m.name!r} ->")
            _safe_target(tmp, m.name, archive)
            if m.isdev():
                raise ArchiveError(f"{archive}: device file {m.name!r} in archive; refusing to extract")
            cap.take(m.size)
            tf.extract(m, tmp, set_attrs=False, filter="data")


def _extract_zip(archive: Path, tmp: Path, cap: _Cap) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = _safe_target(tmp, info.filename, archive)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:  # CRC is checked as the member is read
                _copy_capped(src, out, cap)  # counts what is written, not the sizes the archive declares


def _extract_gz(archive: Path, tmp: Path, cap: _Cap) -> None:
    out = tmp / archive.name[: -len(".gz")]
    with gzip.open(archive, "rb") as src, open(out, "wb") as dst:
        _copy_capped(src, dst, cap)


def _unpack(archive: Path, tmp: Path, max_expansion: float | None = None, min_cap_bytes: int | None = None) -> None:
    kind = archive_kind(archive)
    try:
        cap = _Cap(archive, max_expansion, min_cap_bytes)
        if kind == ".zip":
            _extract_zip(archive, tmp, cap)
        elif kind == ".gz":
            _extract_gz(archive, tmp, cap)
        elif kind is not None:
            _extract_tar(archive, tmp, cap)
        else:
            raise ArchiveError(f"{archive}: not a known archive type ({', '.join(ARCHIVE_SUFFIXES)})")
    except ArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as e:
        raise ArchiveError(f"{archive} is truncated or corrupt ({type(e).__name__}: {e})") from e


def _move_merge(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders are merged (two archives may share a top-level folder,
    e.g. KITTI's image and label zips both hold ``training/``), files and mismatched entries replaced."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in sorted(src.iterdir()):
            _move_merge(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    os.replace(src, dst)


def extract(archive, dest_dir, remove_on_error: bool = False, strip: str | None = None,
            max_expansion: float | None = None, min_cap_bytes: int | None = None) -> Path:
    """Unpack ``archive`` into ``dest_dir`` atomically; return ``dest_dir``.

    Contents are unpacked into a temporary folder beside ``dest_dir`` (same file system); only
    after the whole archive was read without error is each top-level entry moved into
    ``dest_dir`` with ``os.replace`` (folders that already exist are merged file by file; a file left
    there by an earlier interrupted run is replaced).
    ``strip``: a single top-level folder name in the archive whose *contents* go into ``dest_dir``.
    On a truncated/corrupt archive the temporary folder is removed, ``archive`` too when
    ``remove_on_error`` (a file we downloaded ourselves), and :class:`ArchiveError` is raised.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} not found")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir.parent / f".{dest_dir.name}.extract-{os.getpid()}-{int(time.time() * 1000)}"
    tmp.mkdir(parents=True)
    try:
        _unpack(archive, tmp, max_expansion, min_cap_bytes)
        src = tmp
        if strip:
            src = tmp / strip
            if not src.is_dir():
                raise ArchiveError(f"{archive} has no top-level folder {strip!r}; it holds {sorted(p.name for p in tmp.iterdir())}")
        dest_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(src.iterdir()):
            _move_merge(entry, dest_dir / entry.name)
    except ArchiveError:
        if remove_on_error:
            archive.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


def check_archive(archive) -> None:
    """Read a whole archive without keeping anything (raises :class:`ArchiveError` if unreadable)."""
    archive = Path(archive)
    tmp = archive.parent / f".{archive.name}.check-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        _unpack(archive, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class FetchLog:
    """What was fetched/verified for a dataset (goes into its manifest)."""

    files: list = field(default_factory=list)

    def add(self, f: RemoteFile, info: dict, how: str) -> None:
        self.files.append(
            {"filename": f.filename, "url": f.url, "how": how, "size": info.get("size"), "md5": info.get("md5"), "sha256": info.get("sha256"),
             "published_md5": f.md5, "published_sha256": f.sha256}
        )
