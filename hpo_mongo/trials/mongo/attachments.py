"""GridFS blobs of the Mongo store (bucket ``fs``): the pickled domain, experiment and trial attachments.

File names and metadata (docs/schema.md):

- the domain payload: ``domain/<sha256>``, metadata ``{kind: "domain", hash, exp_key}``. It is
  content-addressed and stored once: a restarted driver with the same objective finds it, and
  workers cache loaded domains by hash.
- experiment attachments (``trials.attachments[name]``): ``exp/<exp_key or "">/<name>``,
  metadata ``{kind: "exp", exp_key, name}``.
- trial attachments (``trials.trial_attachments(trial)[name]``): ``trial/<tid>/<name>``, metadata
  ``{kind: "trial", exp_key, tid, name}``; the trial document lists them in ``_attachments``
  as ``[name, file_id]`` pairs (hyperopt's field).

Writing a name again stores a new file, then deletes the older ones with that name, so a reader
never sees the name missing; a reader always takes the newest file of a name.

Files are read chunk by chunk, a bounded number of chunks per query (:data:`READ_BATCH_BYTES`),
so a reply never exceeds the server's message size whatever the file's size (some servers,
mongo-java-server among them, return a whole file's remaining chunks in one reply).
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, MutableMapping

import gridfs
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from ...exceptions import StoreError
from . import jobs as _jobs

BUCKET = "fs"
#: at most this many bytes of chunks are asked for per query when a file is read
READ_BATCH_BYTES = 8 * 1024 * 1024


def _fs(db: Database) -> gridfs.GridFS:
    return gridfs.GridFS(db, collection=BUCKET)


def _newest(fs: gridfs.GridFS, query: Mapping[str, Any]):
    for f in fs.find(dict(query)).sort("uploadDate", -1).limit(1):
        return f
    return None


def read_file(db: Database, f: Any) -> bytes:
    """The content of GridFS file ``f`` (a ``GridOut``), read in bounded batches of chunks;
    :class:`StoreError` when a chunk is missing or the sizes do not add up."""
    length, size = int(f.length), int(f.chunk_size)
    n_chunks = math.ceil(length / size) if length else 0
    per_query = max(1, READ_BATCH_BYTES // size)
    chunks = db[f"{BUCKET}.chunks"]
    parts: list[bytes] = []
    for start in range(0, n_chunks, per_query):
        stop = min(n_chunks, start + per_query)
        cursor = chunks.find({"files_id": f._id, "n": {"$gte": start, "$lt": stop}}, {"n": 1, "data": 1})
        got = list(cursor.sort("n", 1).batch_size(per_query))
        if [c["n"] for c in got] != list(range(start, stop)):
            raise StoreError(f"GridFS file {f.filename!r} ({f._id}) is incomplete: chunks {start}..{stop - 1} "
                             f"expected, found {[c['n'] for c in got]}")
        parts.extend(bytes(c["data"]) for c in got)
    data = b"".join(parts)
    if len(data) != length:
        raise StoreError(f"GridFS file {f.filename!r} ({f._id}) holds {len(data)} bytes, its length says {length}")
    return data


def _replace(fs: gridfs.GridFS, filename: str, data: bytes, metadata: dict) -> Any:
    """Store ``data`` under ``filename``, then delete the older files of that name."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"attachments are bytes; got {type(data).__name__} for {filename!r}")
    new_id = fs.put(bytes(data), filename=filename, metadata=metadata)
    for old in fs.find({"filename": filename}):
        if old._id != new_id:
            fs.delete(old._id)
    return new_id


# ----------------------------------------------------------------------------- the domain
def domain_filename(digest: str) -> str:
    return f"domain/{digest}"


def put_domain(db: Database, blob: bytes, digest: str, exp_key: str | None) -> None:
    """Store the packed domain payload under its hash, unless it is already there. A failed
    upload leaves no chunks behind; a stored file that does not hold every chunk is refused."""
    fs = _fs(db)
    f = _newest(fs, {"filename": domain_filename(digest)})
    if f is None:
        grid_in = fs.new_file(filename=domain_filename(digest),
                              metadata={"kind": "domain", "hash": digest, "exp_key": exp_key})
        try:
            grid_in.write(bytes(blob))
            grid_in.close()
        except BaseException as e:
            try:
                grid_in.abort()
            except Exception:  # noqa: BLE001 - the upload's own error is the one to report
                pass
            if isinstance(e, PyMongoError) and not isinstance(e, ConnectionFailure):  # outages are retried
                raise StoreError(f"MongoDB refused the domain payload ({len(blob) / 2**20:.1f} MB) in GridFS: "
                                 f"{' '.join(str(e).split())[:300]}") from e
            raise
        f = _newest(fs, {"filename": domain_filename(digest)})
    n_chunks = math.ceil(len(blob) / int(f.chunk_size)) if len(blob) else 0
    stored = db[f"{BUCKET}.chunks"].count_documents({"files_id": f._id})
    if int(f.length) != len(blob) or stored != n_chunks:
        raise StoreError(f"the domain payload {digest[:12]} was not stored whole: {f.length} of {len(blob)} bytes, "
                         f"{stored} of {n_chunks} chunks")


def get_domain(db: Database, digest: str) -> bytes | None:
    """The packed domain payload with this hash, or None."""
    f = _newest(_fs(db), {"filename": domain_filename(digest)})
    return read_file(db, f) if f is not None else None


# ----------------------------------------------------------------------------- experiment attachments
class ExperimentAttachments(MutableMapping):
    """``name -> bytes`` attachments of one experiment (``MongoTrials.attachments``)."""

    def __init__(self, db: Database, exp_key: str | None):
        self._db, self._fs, self._exp_key = db, _fs(db), exp_key
        self._prefix = f"exp/{exp_key or ''}/"

    def __getitem__(self, name: str) -> bytes:
        f = _newest(self._fs, {"filename": self._prefix + name})
        if f is None:
            raise KeyError(name)
        return read_file(self._db, f)

    def __setitem__(self, name: str, value: bytes) -> None:
        _replace(self._fs, self._prefix + name, value,
                 {"kind": "exp", "exp_key": self._exp_key, "name": name})

    def __delitem__(self, name: str) -> None:
        found = list(self._fs.find({"filename": self._prefix + name}))
        if not found:
            raise KeyError(name)
        for f in found:
            self._fs.delete(f._id)

    def _names(self) -> list[str]:
        names = {f.metadata["name"] for f in self._fs.find({"metadata.kind": "exp", "metadata.exp_key": self._exp_key})
                 if f.metadata and f.filename.startswith(self._prefix)}
        return sorted(names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._fs.exists({"filename": self._prefix + name})

    def clear(self) -> None:
        for f in self._fs.find({"metadata.kind": "exp", "metadata.exp_key": self._exp_key}):
            if f.filename.startswith(self._prefix):
                self._fs.delete(f._id)


# ----------------------------------------------------------------------------- trial attachments
def trial_filename(tid: int, name: str) -> str:
    return f"trial/{tid}/{name}"


class TrialAttachments(MutableMapping):
    """``name -> bytes`` attachments of one trial; also listed in the trial's ``_attachments``."""

    def __init__(self, db: Database, jobs_collection, trial: Mapping[str, Any]):
        self._db, self._fs, self._jobs, self._trial = db, _fs(db), jobs_collection, trial
        self._tid = int(trial["tid"])

    def __getitem__(self, name: str) -> bytes:
        f = _newest(self._fs, {"filename": trial_filename(self._tid, name)})
        if f is None:
            raise KeyError(name)
        return read_file(self._db, f)

    def __setitem__(self, name: str, value: bytes) -> None:
        file_id = _replace(self._fs, trial_filename(self._tid, name), value,
                           {"kind": "trial", "exp_key": self._trial.get("exp_key"), "tid": self._tid,
                            "name": name})
        if "_id" in self._trial:
            _jobs.set_attachment_ref(self._jobs, self._trial, name, file_id)

    def __delitem__(self, name: str) -> None:
        found = list(self._fs.find({"filename": trial_filename(self._tid, name)}))
        if not found:
            raise KeyError(name)
        for f in found:
            self._fs.delete(f._id)
        if "_id" in self._trial:
            _jobs.set_attachment_ref(self._jobs, self._trial, name)

    def _names(self) -> list[str]:
        return sorted({f.metadata["name"] for f in self._fs.find({"metadata.kind": "trial",
                                                                   "metadata.tid": self._tid})
                       if f.metadata})

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._fs.exists({"filename": trial_filename(self._tid, name)})


def delete_trial_files(db: Database, tids: list[int]) -> int:
    """Delete the GridFS files of the given trials' attachments; return how many were deleted."""
    fs, n = _fs(db), 0
    if not tids:
        return 0
    for f in fs.find({"metadata.kind": "trial", "metadata.tid": {"$in": list(tids)}}):
        fs.delete(f._id)
        n += 1
    return n
