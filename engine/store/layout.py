"""Where the event store keeps its files (contract §6), and how its day files are read line by line."""
from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DAY_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Layout:
    """`events/YYYY-MM-DD.jsonl`, `events/archive/*.jsonl.gz`, `events/summaries/*.json`, `events/corrupt/`."""

    events_dir: Path

    @classmethod
    def under(cls, data_dir: str | Path) -> Layout:
        return cls(Path(data_dir) / "events")

    @property
    def archive_dir(self) -> Path:
        return self.events_dir / "archive"

    @property
    def summaries_dir(self) -> Path:
        return self.events_dir / "summaries"

    @property
    def corrupt_dir(self) -> Path:
        return self.events_dir / "corrupt"

    def raw(self, day: str) -> Path:
        return self.events_dir / f"{day}.jsonl"

    def archive(self, day: str) -> Path:
        return self.archive_dir / f"{day}.jsonl.gz"

    def summary(self, day: str) -> Path:
        return self.summaries_dir / f"{day}.json"

    def days(self) -> list[str]:
        """Every day that has a raw file or an archive, oldest first."""
        found: set[str] = set()
        for folder in (self.events_dir, self.archive_dir):
            if folder.is_dir():
                found.update(m.group(1) for m in map(DAY_RE.match, os.listdir(folder)) if m)
        return sorted(found)

    def source(self, day: str) -> Path | None:
        """The file that holds a day's events. Both exist only when a compaction stopped after its
        rename and before deleting the raw file; the archive is then complete, so it wins."""
        archive = self.archive(day)
        if archive.exists():
            return archive
        raw = self.raw(day)
        return raw if raw.exists() else None


def _raw_chunks(path: Path, offset: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(READ_CHUNK):
            yield chunk


def _gzip_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every gzip member in turn (late events are appended as new members).

    Stops quietly at a damaged or truncated member, after yielding everything before it.
    """
    with open(path, "rb") as handle:
        inflater = zlib.decompressobj(wbits=31)
        while chunk := handle.read(READ_CHUNK):
            while chunk:
                try:
                    out = inflater.decompress(chunk)
                except zlib.error:
                    return
                if out:
                    yield out
                if not inflater.eof:
                    break
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)


def iter_lines(path: Path, offset: int = 0) -> Iterator[bytes]:
    """Complete lines of a raw or gzip day file, streamed in chunks.

    A last line without its newline (a write in progress, or torn by a crash) is skipped, and so is
    the damaged tail of a gzip archive: readers never raise on a file a writer may be appending to.
    `offset` (raw files only) starts at a byte position that begins a line.
    """
    chunks = _gzip_chunks(path) if path.suffix == ".gz" else _raw_chunks(path, offset)
    rest = b""
    try:
        for chunk in chunks:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from (line for line in lines if line)
    except OSError:
        return
