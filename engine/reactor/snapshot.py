"""Copies of the files a run may change, taken before it changes them, so the run can be undone.

`data/snapshots/<run_id>/manifest.json` lists every captured path with its pre-run state;
`files/<sha256>` holds the content of each captured regular file (content-addressed, so identical
files are stored once and a copy's name proves its integrity at restore time).

What is captured, per path handed to `capture`:
- a regular file: bytes, mode, owner; a directory: itself and everything below it, recursively;
- a path that does not exist: recorded as absent, so `restore` deletes what the run created there,
  and so are its missing parent directories (removed at restore only when empty);
- symlinks are recorded as links (their target text) and never followed inside a captured
  directory. A path handed to `capture` that is itself a symlink also captures the path the link
  resolves to, so a step that writes through the link is undone as well;
- sockets, FIFOs and devices are recorded as present and left alone by `restore`.

The first state wins: a path already captured, or inside a captured directory, is not captured again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from engine.events import format_ts
from engine.osutil.files import atomic_write, fsync_dir

DEFAULT_CAP_BYTES = 64 << 20
MANIFEST_VERSION = 1
RUN_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
_CHUNK = 1 << 20
_TMP_SUFFIX = ".aios-restore.tmp"

Clock = Callable[[], float]


class SnapshotError(Exception):
    """A snapshot that cannot be taken, read or restored; the message names the path."""


class SnapshotTooLarge(SnapshotError):
    """A capture would take the snapshot over its cap; nothing of that capture was copied."""


class SnapshotMissing(SnapshotError):
    """The run has no snapshot (none was taken, or retention deleted it)."""


def valid_run_id(run_id: str) -> bool:
    """Run ids name directories, so only plain names pass (no `/`, no `..`)."""
    return isinstance(run_id, str) and bool(RUN_ID_RE.match(run_id))


def snapshots_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "snapshots"


@dataclass(slots=True)
class Entry:
    """One path's pre-run state.

    `kind`: file, dir, symlink, other (present, never touched) or absent. `origin`: root (handed to
    `capture`), inside (found under a captured directory) or parent (a missing parent of an absent
    root, removed at restore only when empty).
    """

    path: str
    kind: str
    origin: str
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0
    sha256: str | None = None
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "origin": self.origin}
        if self.mode is not None:
            out.update(mode=f"{self.mode:04o}", uid=self.uid, gid=self.gid)
        if self.kind == "file":
            out.update(size=self.size, sha256=self.sha256)
        if self.target is not None:
            out["target"] = self.target
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        mode = data.get("mode")
        return cls(data["path"], data["kind"], data["origin"], int(mode, 8) if mode is not None else None,
                   data.get("uid"), data.get("gid"), data.get("size", 0), data.get("sha256"), data.get("target"))

    @property
    def removes_all(self) -> bool:
        """Restore owns everything at and below this path: a captured directory, or a root that was absent."""
        return self.kind == "dir" or (self.kind == "absent" and self.origin != "parent")


class Snapshot:
    """The snapshot of one run. Build with `create` (before the run) or `load` (afterwards)."""

    def __init__(self, directory: Path, run_id: str, cap_bytes: int, created: str, clock: Clock) -> None:
        self.dir = directory
        self.run_id = run_id
        self.cap_bytes = cap_bytes
        self.created = created
        self.entries: dict[str, Entry] = {}
        self.bytes = 0
        self.sealed: dict[str, Any] | None = None
        self._clock = clock

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @classmethod
    def create(cls, data_dir: str | Path, run_id: str, cap_bytes: int = DEFAULT_CAP_BYTES,
               clock: Clock = time.time) -> Snapshot:
        """An empty snapshot for a new run; refuses to overwrite one that exists (its first state wins)."""
        if not valid_run_id(run_id):
            raise SnapshotError(f"invalid run id {run_id!r}")
        snap = cls(snapshots_dir(data_dir) / run_id, run_id, cap_bytes, format_ts(clock()), clock)
        if snap.manifest_path.exists():
            raise SnapshotError(f"{snap.manifest_path}: a snapshot of run {run_id} already exists")
        with _naming(snap.dir, "create the snapshot directory"):
            (snap.dir / "files").mkdir(parents=True, exist_ok=True)
            fsync_dir(snap.dir.parent)
        snap._write_manifest()
        return snap

    @classmethod
    def load(cls, data_dir: str | Path, run_id: str, clock: Clock = time.time) -> Snapshot:
        directory = snapshots_dir(data_dir) / run_id if valid_run_id(run_id) else None
        if directory is None or not (directory / "manifest.json").is_file():
            raise SnapshotMissing(f"run {run_id} has no snapshot in {snapshots_dir(data_dir)}")
        path = directory / "manifest.json"
        try:
            data = orjson.loads(path.read_bytes())
            snap = cls(directory, run_id, data["cap_bytes"], data["created"], clock)
            snap.entries = {e["path"]: Entry.from_dict(e) for e in data["entries"]}
            snap.bytes = data["bytes"]
            snap.sealed = data.get("sealed")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{path}: unreadable snapshot manifest ({type(exc).__name__}: {exc})") from None
        return snap

    @property
    def roots(self) -> list[str]:
        return [e.path for e in self.entries.values() if e.origin == "root"]

    def info(self) -> dict[str, Any]:
        """What the run record shows about this snapshot."""
        return {"paths": self.roots, "files": sum(e.kind == "file" for e in self.entries.values()),
                "bytes": self.bytes, "cap_bytes": self.cap_bytes,
                "sealed": self.sealed["at"] if self.sealed else None}

    # -- capture ---------------------------------------------------------------------------------

    def capture(self, paths: Iterable[str | Path]) -> None:
        """Record the current state of `paths` (absolute), except those already captured.

        Everything is measured before anything is copied, so a capture over the cap raises
        `SnapshotTooLarge` and leaves the snapshot as it was. The manifest is rewritten atomically
        after the copies are durable.
        """
        planned: dict[str, Entry] = {}
        for raw in paths:
            path = self._checked(raw)
            for root in (path, *_link_target(path)):
                known = self.entries.get(root) or planned.get(root)
                if known is not None:
                    if known.origin == "parent":
                        known.origin = "root"  # an absent parent now named: the whole path goes at restore
                    continue
                nearest = self._nearest(root, planned)
                if nearest is None or not nearest.removes_all:
                    self._plan(root, planned, pre_absent=nearest is not None and nearest.kind == "absent")
        added = sum(e.size for e in planned.values() if e.kind == "file")
        if self.bytes + added > self.cap_bytes:
            roots = ", ".join(p for p, e in planned.items() if e.origin == "root")
            raise SnapshotTooLarge(
                f"snapshot of run {self.run_id} would hold {_size(self.bytes + added)}, over its cap of "
                f"{_size(self.cap_bytes)}: {roots} would add {_size(added)}")
        for entry in planned.values():
            if entry.kind == "file":
                self._copy_in(entry)
        fsync_dir(self.dir / "files")
        self.entries.update(planned)
        self.bytes += sum(e.size for e in planned.values() if e.kind == "file")
        self._write_manifest()

    def _checked(self, raw: str | Path) -> str:
        """An absolute, normalized path; relative paths, `..` and the data directory itself are refused."""
        text = str(raw)
        if not os.path.isabs(text):
            raise SnapshotError(f"{text}: snapshot paths must be absolute")
        if ".." in text.split("/") or "\0" in text:
            raise SnapshotError(f"{text}: snapshot paths may not contain '..' or NUL")
        path = "/" + os.path.normpath(text).lstrip("/")
        own, real = os.path.realpath(self.dir.parent), os.path.realpath(path)
        if real == own or real.startswith(own + "/") or own.startswith(real.rstrip("/") + "/"):
            raise SnapshotError(f"{text}: overlaps the snapshot store {self.dir.parent}")
        return path

    def _nearest(self, path: str, planned: dict[str, Entry]) -> Entry | None:
        """The closest recorded ancestor of `path`: a captured directory or an absent root already
        holds it (`removes_all`); an absent parent means it did not exist before the run either."""
        parent = os.path.dirname(path)
        while parent != path:
            entry = self.entries.get(parent) or planned.get(parent)
            if entry is not None:
                return entry
            path, parent = parent, os.path.dirname(parent)
        return None

    def _plan(self, root: str, planned: dict[str, Entry], pre_absent: bool) -> None:
        """Describe `root` (and its tree) into `planned`, without copying anything yet."""
        with _naming(root, "capture"):
            try:
                if pre_absent:
                    raise FileNotFoundError
                os.lstat(root)
            except (FileNotFoundError, NotADirectoryError):
                planned[root] = Entry(root, "absent", "root")
                parent = os.path.dirname(root)
                while parent not in planned and parent not in self.entries \
                        and (pre_absent or not os.path.lexists(parent)):
                    planned[parent] = Entry(parent, "absent", "parent")
                    parent = os.path.dirname(parent)
                return
            for path, st in _walk(root):
                if path not in self.entries and path not in planned:
                    planned[path] = _describe(path, st, "root" if path == root else "inside")

    def _copy_in(self, entry: Entry) -> None:
        """Copy one file into `files/<sha256>`; its size and hash are those of the bytes copied."""
        files = self.dir / "files"
        tmp = files / f".{os.getpid()}.tmp"
        with _naming(entry.path, "capture"), _open_nofollow(entry.path) as src, open(tmp, "wb") as dst:
            entry.sha256, entry.size = _stream(src, dst)
            os.fsync(dst.fileno())
        os.replace(tmp, files / entry.sha256)

    def _write_manifest(self) -> None:
        atomic_write(self.manifest_path, orjson.dumps({
            "version": MANIFEST_VERSION, "run_id": self.run_id, "created": self.created,
            "cap_bytes": self.cap_bytes, "bytes": self.bytes,
            "entries": [e.to_dict() for e in self.entries.values()], "sealed": self.sealed,
        }, option=orjson.OPT_INDENT_2))

    # -- restore ---------------------------------------------------------------------------------

    def restore(self) -> list[str]:
        """Put every captured path back in its pre-run state; returns the paths it changed.

        Parents first: a directory is made a real directory again (never followed if the run
        swapped it for a link) and cleared of what the run created in it before its content is
        put back; absent roots are deleted. Directory modes come last, deepest first, so a
        read-only directory gets its content before its mode. Each file is replaced atomically
        and a path already in its pre-run state is left alone, so a restore stopped by a crash
        finishes when run again, and a second run changes nothing.
        """
        changed: dict[str, None] = {}
        ordered = sorted(self.entries.values(), key=lambda e: (e.path.count("/"), e.path))
        for entry in ordered:
            with _naming(entry.path, "restore"):
                if self._put_back(entry):
                    changed[entry.path] = None
                if entry.kind == "dir":
                    for name in os.listdir(entry.path):
                        child = os.path.join(entry.path, name)
                        if child not in self.entries and _remove(child):
                            changed[child] = None
        for entry in reversed(ordered):
            with _naming(entry.path, "restore"):
                if entry.kind == "dir" and _apply_owner_mode(entry.path, entry):
                    changed[entry.path] = None
                elif entry.origin == "parent" and _rmdir_if_empty(entry.path):
                    changed[entry.path] = None
        return list(changed)

    def _put_back(self, entry: Entry) -> bool:
        """Bring one path back to its entry (an absent one is deleted); True when something changed."""
        if entry.kind == "absent":
            return entry.origin != "parent" and _remove(entry.path)
        if entry.kind == "dir":
            if _is_dir(entry.path):
                return False
            _remove(entry.path)
            os.mkdir(entry.path, 0o700)  # its mode comes last, once its content is back
            return True
        if entry.kind == "file":
            tmp = _fresh_tmp(entry.path)
            if self._same_bytes(entry):
                return _apply_owner_mode(entry.path, entry)
            self._write_back(entry, tmp)
            return True
        if entry.kind == "symlink":
            tmp = _fresh_tmp(entry.path)
            with contextlib.suppress(OSError):
                if os.readlink(entry.path) == entry.target:
                    return _apply_owner_mode(entry.path, entry)
            os.symlink(entry.target or "", tmp)
            _replace(tmp, entry.path)
            return True
        return False

    @staticmethod
    def _same_bytes(entry: Entry) -> bool:
        try:
            st = os.lstat(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        with _open_nofollow(entry.path) as handle:
            return _stream(handle)[0] == entry.sha256

    def _write_back(self, entry: Entry, tmp: str) -> None:
        """Write the copy to `tmp` beside the target (owner and mode set before the content is visible
        under the real name), verify its hash, then rename it over the target."""
        copy = self.dir / "files" / str(entry.sha256)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as dst:
                try:
                    src = open(copy, "rb")
                except FileNotFoundError:
                    raise SnapshotError(f"{entry.path}: its copy {copy} is missing; not restored") from None
                with src:
                    digest, _ = _stream(src, dst)
                if digest != entry.sha256:
                    raise SnapshotError(f"{entry.path}: its copy {copy} is damaged (sha256 differs); not restored")
                _set_owner(dst.fileno(), entry)
                os.fchmod(dst.fileno(), entry.mode or 0o600)
                dst.flush()
                os.fsync(dst.fileno())
            _replace(tmp, entry.path)
        except BaseException:
            _discard(tmp)
            raise

    # -- seal ------------------------------------------------------------------------------------

    def seal(self) -> None:
        """Record the state the run left behind, so a later rollback can tell whether anyone changed
        the files since. Call it once the run has finished (after any automatic restore)."""
        self.sealed = {"at": format_ts(self._clock()), "state": self._fingerprint()}
        self._write_manifest()

    def changed_since_seal(self) -> list[str]:
        """Paths whose content, mode, owner, link target or existence differ from the sealed state."""
        if self.sealed is None:
            raise SnapshotError(f"the snapshot of run {self.run_id} was never sealed (the run did not finish "
                                "cleanly), so changes since cannot be checked")
        now, then = self._fingerprint(), self.sealed["state"]
        return sorted(p for p in now.keys() | then.keys() if now.get(p) != then.get(p))

    def _fingerprint(self) -> dict[str, str]:
        """One line per path present under the roots now: kind, owner, mode and content hash or target."""
        state: dict[str, str] = {}
        for root in self.roots:
            with _naming(root, "check"):
                if not os.path.lexists(root):
                    continue
                for path, st in _walk(root):
                    owner = f"{stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}"
                    if stat.S_ISREG(st.st_mode):
                        with _open_nofollow(path) as handle:
                            state[path] = f"file {owner} {_stream(handle)[0]}"
                    elif stat.S_ISLNK(st.st_mode):
                        state[path] = f"symlink {os.readlink(path)}"
                    else:
                        state[path] = f"{'dir' if stat.S_ISDIR(st.st_mode) else 'other'} {owner}"
        return state


# -- helpers -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _naming(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an OSError into a SnapshotError that names the path and what was being done."""
    try:
        yield
    except SnapshotError:
        raise
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else str(path)
        raise SnapshotError(f"{where}: cannot {doing}: {exc.strerror or exc}") from None


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """`root` and, when it is a real directory, everything below it; links are never followed."""
    stack = [(root, os.lstat(root))]
    while stack:
        path, st = stack.pop()
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(path) as listing:
                children = sorted(listing, key=lambda d: d.name, reverse=True)
            stack.extend((child.path, child.stat(follow_symlinks=False)) for child in children)


def _describe(path: str, st: os.stat_result, origin: str) -> Entry:
    mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    if stat.S_ISREG(st.st_mode):
        return Entry(path, "file", origin, mode, uid, gid, size=st.st_size)
    if stat.S_ISDIR(st.st_mode):
        return Entry(path, "dir", origin, mode, uid, gid)
    if stat.S_ISLNK(st.st_mode):
        return Entry(path, "symlink", origin, mode, uid, gid, target=os.readlink(path))
    return Entry(path, "other", origin, mode, uid, gid)


def _link_target(path: str) -> tuple[str, ...]:
    """The path a symlink resolves to, when `path` is one; steps that write through it change that file."""
    if not os.path.islink(path):
        return ()
    target = os.path.realpath(path)
    return (target,) if target != path else ()


def _stream(src: IO[bytes], dst: IO[bytes] | None = None) -> tuple[str, int]:
    """sha256 and size of what `src` holds, copying it into `dst` on the way when given."""
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest(), size


def _open_nofollow(path: str) -> IO[bytes]:
    """Open a file for reading, failing (ELOOP) if it was swapped for a symlink since it was examined."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _fresh_tmp(path: str) -> str:
    """The temporary name beside `path` that a restore writes first; a leftover of a crashed restore
    is removed, and a parent directory the run deleted (and nobody captured) is recreated."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}{_TMP_SUFFIX}")
    try:
        _discard(tmp)
        os.makedirs(head, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SnapshotError(f"{path}: cannot restore: {head} is no longer a directory; "
                            "move it aside and roll back again") from None
    return tmp


def _replace(tmp: str, path: str) -> None:
    """Rename `tmp` over `path` (a directory in the way is removed first) and make it durable."""
    if _is_dir(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
    fsync_dir(Path(os.path.dirname(path)))


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _remove(path: str) -> bool:
    """Delete a file, link or whole directory; False when nothing was there."""
    try:
        if _is_dir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(path)


def _rmdir_if_empty(path: str) -> bool:
    try:
        os.rmdir(path)
    except OSError:  # absent, not empty, or not a directory: not ours to remove
        return False
    return True


def _set_owner(fd: int, entry: Entry) -> None:
    """Owners can only be given away by root; anyone else keeps the files it rewrites."""
    with contextlib.suppress(PermissionError):
        os.fchown(fd, entry.uid if entry.uid is not None else -1, entry.gid if entry.gid is not None else -1)


def _apply_owner_mode(path: str, entry: Entry) -> bool:
    """Give `path` its entry's owner and mode (a link's mode is left alone); True when something changed."""
    st = os.lstat(path)
    changed = False
    if entry.uid is not None and (st.st_uid, st.st_gid) != (entry.uid, entry.gid):
        with contextlib.suppress(PermissionError):
            os.lchown(path, entry.uid, entry.gid if entry.gid is not None else -1)
            changed = True
    if entry.kind != "symlink" and entry.mode is not None and stat.S_IMODE(st.st_mode) != entry.mode:
        os.chmod(path, entry.mode)
        changed = True
    return changed


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB ({n} bytes)"
