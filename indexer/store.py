"""The gallery's SQLite database: schema, transactions and the generation counter.

The database is the gallery's source of truth: identities, images (path,
sha256, enrolment time and the embedding as a little-endian float32 BLOB),
twin links, and metadata (model fingerprint, embedding size, checkpoint path,
index type and a generation counter). Every change to the stored embeddings
runs in one transaction that also increments the generation, so the FAISS
index file, which carries the generation it was built from, can be checked
for staleness.

The database runs in WAL mode: a reader keeps the snapshot it started with
while a writer commits, and a process killed mid-transaction leaves the last
committed state. Writers serialise on the gallery's write lock
(:class:`indexer.lock.WriteLock`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

logger = logging.getLogger(__name__)

DB_FILE = "gallery.db"
FORMAT_VERSION = 1
EMBEDDING_DTYPE = np.dtype("<f4")
# SQLite builds before 3.32.0 allow at most 999 bound parameters per statement.
_PARAMETER_CHUNK = 500

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
-- AUTOINCREMENT: an image id is a FAISS id and is never reused after a removal.
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    enrolled_at REAL NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX images_by_identity ON images(identity_id);
-- Twin links name identities, so a link may be stored before both twins are enrolled.
CREATE TABLE twin_links (
    identity_a TEXT NOT NULL,
    identity_b TEXT NOT NULL,
    PRIMARY KEY (identity_a, identity_b),
    CHECK (identity_a < identity_b)
);
"""


class GalleryNotFoundError(FileNotFoundError):
    """The folder contains no gallery database."""


@dataclass(frozen=True)
class ImageRecord:
    """One enrolled image (without its embedding)."""

    id: int  # the image's FAISS id
    identity: str
    path: str
    sha256: str
    enrolled_at: float  # Unix time, seconds


def encode_embedding(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).tobytes()


def decode_embeddings(blobs: Sequence[bytes], d: int) -> np.ndarray:
    """Decode BLOBs into float32 (n, d); raise ValueError on a BLOB of the wrong size."""
    xb = np.empty((len(blobs), d), dtype=np.float32)
    for row, blob in enumerate(blobs):
        if len(blob) != d * EMBEDDING_DTYPE.itemsize:
            raise ValueError(f"stored embedding has {len(blob)} bytes, expected {d} float32 values; "
                             "the gallery database is corrupt, rebuild it with dcal-enroll")
        xb[row] = np.frombuffer(blob, dtype=EMBEDDING_DTYPE)
    return xb


def _chunks(values: Sequence, size: int = _PARAMETER_CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class GalleryStore:
    """A connection to a gallery database.

    Reads run inside a snapshot (:meth:`begin_snapshot`) that lasts until the
    next write or :meth:`end_snapshot`, so a search reads one committed state
    even while another process enrols. Writes run in :meth:`write`, one
    ``BEGIN IMMEDIATE`` transaction each.

    Raises:
        GalleryNotFoundError: ``folder`` has no gallery database.
    """

    def __init__(self, folder: str | os.PathLike, readonly: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / DB_FILE
        if not self.path.is_file():
            raise GalleryNotFoundError(f"no gallery at {self.folder}: {DB_FILE} is missing")
        self.readonly = readonly
        self.conn = self._connect(self.path, readonly)
        self.meta = self.read_meta()

    @staticmethod
    def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30)
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
            # WAL with synchronous=NORMAL survives a killed process; only a power
            # loss can drop the last commits, never corrupt the database.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @classmethod
    def create(cls, folder: str | os.PathLike, meta: dict[str, str]) -> "GalleryStore":
        """Create the database in ``folder`` with ``meta``; the caller holds the write lock.

        The database is built under a temporary name and renamed into place, so
        a crash during creation leaves no half-initialised gallery.

        Raises:
            FileExistsError: ``folder`` already contains a gallery.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / DB_FILE
        if path.exists():
            raise FileExistsError(f"{folder} already contains a gallery ({DB_FILE}); open it instead of creating it")
        for leftover in folder.glob(f".{DB_FILE}.tmp-*"):
            leftover.unlink()
        tmp = folder / f".{DB_FILE}.tmp-{os.getpid()}"
        conn = cls._connect(tmp)
        try:
            conn.execute("BEGIN")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            rows = {"format_version": str(FORMAT_VERSION), "generation": "0",
                    "created_at": f"{time.time():.3f}", **meta}
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(rows.items()))
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return cls(folder)

    def close(self) -> None:
        self.end_snapshot()
        self.conn.close()

    # ------------------------------------------------------------ transactions

    def begin_snapshot(self) -> int:
        """Start (or keep) a read snapshot and return its generation."""
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        return self.generation()

    def end_snapshot(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def write(self, bump_generation: bool = True) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; commit on success, roll back on error.

        With ``bump_generation`` the transaction also increments the generation,
        which every change to the stored embeddings must do.
        """
        if self.readonly:
            raise PermissionError(f"gallery {self.folder} was opened read-only")
        self.end_snapshot()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            if bump_generation:
                self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # -------------------------------------------------------------- metadata

    def read_meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta"))

    def generation(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a metadata value; call inside :meth:`write`."""
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        self.meta[key] = value

    @property
    def embedding_size(self) -> int:
        return int(self.meta["embedding_size"])

    # ----------------------------------------------------------------- reads

    def counts(self) -> tuple[int, int]:
        """Return (identities, images)."""
        identities = self.conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
        images = self.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        return identities, images

    def find_hashes(self, hashes: Sequence[str]) -> dict[str, str]:
        """Return sha256 -> identity for the hashes that are already enrolled."""
        found: dict[str, str] = {}
        unique = sorted(set(hashes))
        for chunk in _chunks(unique):
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(
                f"SELECT images.sha256, identities.name FROM images JOIN identities "
                f"ON identities.id = images.identity_id WHERE images.sha256 IN ({marks})", chunk))
        return found

    def embeddings(self, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids int64 (n,), xb float32 (n, d)) in id order, for all images or for ``ids``.

        Ids that are not in the database are left out.
        """
        if ids is None:
            rows = self.conn.execute("SELECT id, embedding FROM images ORDER BY id").fetchall()
        else:
            rows = []
            for chunk in _chunks(sorted({int(i) for i in ids})):
                marks = ",".join("?" * len(chunk))
                rows += self.conn.execute(f"SELECT id, embedding FROM images WHERE id IN ({marks}) ORDER BY id",
                                          chunk).fetchall()
        found_ids = np.array([row[0] for row in rows], dtype=np.int64)
        return found_ids, decode_embeddings([row[1] for row in rows], self.embedding_size)

    def records(self, ids: Iterable[int] | None = None) -> dict[int, ImageRecord]:
        """Return image id -> :class:`ImageRecord`, for all images or for ``ids``."""
        query = ("SELECT images.id, identities.name, images.path, images.sha256, images.enrolled_at "
                 "FROM images JOIN identities ON identities.id = images.identity_id")
        if ids is None:
            rows = self.conn.execute(query + " ORDER BY images.id").fetchall()
        else:
            rows = []
            for chunk in _chunks(sorted({int(i) for i in ids})):
                marks = ",".join("?" * len(chunk))
                rows += self.conn.execute(f"{query} WHERE images.id IN ({marks})", chunk).fetchall()
        return {row[0]: ImageRecord(*row) for row in rows}

    def image_ids_of(self, identity: str) -> list[int]:
        return [row[0] for row in self.conn.execute(
            "SELECT images.id FROM images JOIN identities ON identities.id = images.identity_id "
            "WHERE identities.name = ? ORDER BY images.id", (identity,))]

    def identity_counts(self) -> dict[str, int]:
        """Return identity -> number of enrolled images, sorted by identity."""
        return dict(self.conn.execute(
            "SELECT identities.name, COUNT(images.id) FROM identities "
            "LEFT JOIN images ON images.identity_id = identities.id "
            "GROUP BY identities.id ORDER BY identities.name"))

    def twin_links(self) -> list[tuple[str, str]]:
        """Return the stored twin links (a, b) with a < b, including links to identities not enrolled."""
        return [tuple(row) for row in self.conn.execute(
            "SELECT identity_a, identity_b FROM twin_links ORDER BY identity_a, identity_b")]

    # ---------------------------------------------------------------- writes
    # Call these inside write().

    def identity_id(self, name: str) -> int:
        """Return the row id of identity ``name``, inserting it when new."""
        row = self.conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        if row:
            return row[0]
        return self.conn.execute("INSERT INTO identities (name, created_at) VALUES (?, ?)",
                                 (name, time.time())).lastrowid

    def insert_image(self, identity: str, path: str, sha256: str, embedding: np.ndarray) -> int:
        """Insert one image with its embedding (d,) and return its id."""
        if embedding.shape != (self.embedding_size,):
            raise ValueError(f"embedding of shape {embedding.shape} does not fit the gallery's "
                             f"embedding size {self.embedding_size}")
        return self.conn.execute(
            "INSERT INTO images (identity_id, path, sha256, enrolled_at, embedding) VALUES (?, ?, ?, ?, ?)",
            (self.identity_id(identity), path, sha256, time.time(), encode_embedding(embedding))).lastrowid

    def add_twin_links(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Store twin links (order and duplicates do not matter); return how many were new."""
        added = 0
        for a, b in pairs:
            if a == b:
                continue
            a, b = sorted((str(a), str(b)))
            added += self.conn.execute("INSERT OR IGNORE INTO twin_links (identity_a, identity_b) VALUES (?, ?)",
                                       (a, b)).rowcount
        return added

    def delete_identities(self, names: Sequence[str]) -> int:
        """Delete identities with their images and twin links; return the number of images deleted."""
        deleted = 0
        for name in names:
            deleted += self.conn.execute(
                "DELETE FROM images WHERE identity_id = (SELECT id FROM identities WHERE name = ?)",
                (name,)).rowcount
            self.conn.execute("DELETE FROM identities WHERE name = ?", (name,))
            self.conn.execute("DELETE FROM twin_links WHERE identity_a = ? OR identity_b = ?", (name, name))
        return deleted
