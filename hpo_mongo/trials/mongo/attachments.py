"""GridFS blobs of the Mongo store (bucket ``fs``): the pickled domain, experiment and trial attachments.

File names and metadata (docs/schema.md) — the one place they are made:

- the domain payload: ``domain/<sha256>``, metadata ``{kind: "domain", hash, exp_key}``. It is
  content-addressed and stored once: a restarted driver with the same objective finds it, and
  workers cache loaded domains by hash.
- experiment attachments (``trials.attachments[name]``): ``exp/<exp_key or "">/<name>``,
  metadata ``{kind: "exp", exp_key, name}``. Writing a name again stores a new file, then deletes
  the older ones with that name, so a reader never sees the name missing.
- trial attachments written by a worker (the objective's ``result["attachments"]`` and
  ``ctrl.attachments``): ``trial/<tid>/<attempt>/<name>``, metadata ``{kind: "trial", exp_key,
  tid, attempt, name}``, uploaded before the result and referenced only by the worker's
  owner-conditioned result write (``jobs.finish``), which sets the trial's ``_attachments``; a
  worker whose write is refused (it lost the trial) deletes them again
  (:func:`discard_attempt_files`). So a stale worker changes nothing a reader sees.
- trial attachments written outside a worker (``trials.trial_attachments(trial)[name] = blob``):
  ``trial/<tid>/<name>``, metadata ``{kind: "trial", exp_key, tid, name}``, referenced at once.

The trial document lists its attachments in ``_attachments`` as ``[name, file_id]`` pairs
(hyperopt's field). Readers resolve a name through those references (read from the database),
never by "the newest file of that name"; a file ``trial/<tid>/<name>`` that no reference lists
(documents written without references) is still found by name.

Files are read chunk by chunk, a bounded number of chunks per query (:data:`READ_BATCH_BYTES`),
so a reply never exceeds the server's message size whatever the file's size (some servers,
mongo-java-server among them, return a whole file's remaining chunks in one reply).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping, MutableMapping

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


def as_blob(name: str, value: Any) -> bytes:
    """``value`` as the bytes of attachment ``name``: a str is stored UTF-8 encoded (and read back as
    bytes), as hyperopt's MongoTrials does; TypeError naming it for anything else but bytes-like."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"attachments are bytes or str; got {type(value).__name__} for {name!r}")
    return bytes(value)


def _replace(fs: gridfs.GridFS, filename: str, data: bytes, metadata: dict) -> Any:
    """Store ``data`` under ``filename``, then delete the older files of that name."""
    new_id = fs.put(as_blob(filename, data), filename=filename, metadata=metadata)
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
def trial_filename(tid: int, name: str, attempt: int | None = None) -> str:
    """``trial/<tid>/<attempt>/<name>`` (written by a worker for one attempt) or ``trial/<tid>/<name>``."""
    return f"trial/{tid}/{name}" if attempt is None else f"trial/{tid}/{attempt}/{name}"


def _trial_metadata(trial: Mapping[str, Any], name: str, attempt: int | None = None) -> dict:
    meta = {"kind": "trial", "exp_key": trial.get("exp_key"), "tid": int(trial["tid"]), "name": name}
    if attempt is not None:
        meta["attempt"] = int(attempt)
    return meta


def put_attempt_files(db: Database, trial: Mapping[str, Any], blobs: Mapping[str, bytes]) -> list[list]:
    """Upload a worker's attachments for its claim of ``trial`` (attempt-scoped names); return the
    ``[name, file_id]`` references to pass to ``jobs.finish``. Nothing references them before that."""
    fs, attempt = _fs(db), int(trial["attempt"])
    return [[name, fs.put(as_blob(name, blob), filename=trial_filename(trial["tid"], name, attempt),
                          metadata=_trial_metadata(trial, name, attempt))]
            for name, blob in blobs.items()]


def discard_attempt_files(db: Database, trial: Mapping[str, Any], keep: Iterable[Any] = ()) -> int:
    """Delete the files uploaded for this claim's attempt, except the ``keep`` ids: all of them when
    the result write was refused, the duplicates of a retried upload otherwise. Returns how many."""
    fs, keep, n = _fs(db), set(keep), 0
    for f in fs.find({"metadata.kind": "trial", "metadata.tid": int(trial["tid"]),
                      "metadata.attempt": int(trial["attempt"])}):
        if f._id not in keep:
            fs.delete(f._id)
            n += 1
    return n


def refs_after_attempt(db: Database, trial: Mapping[str, Any], new_refs: list[list]) -> tuple[list[list], list]:
    """The ``_attachments`` a finished attempt leaves, and the ids of the files it replaces.

    ``trial`` is the claimed document: its references, minus those of names this attempt wrote
    and minus files an earlier attempt wrote (a trial requeued by hand and evaluated again), plus
    ``new_refs``. What was attached outside a worker (before the evaluation) stays.
    """
    old = [list(pair) for pair in trial.get("_attachments") or []]
    if not old:
        return [list(p) for p in new_refs], []
    written = {name for name, _ in new_refs}
    earlier = {f["_id"] for f in db[f"{BUCKET}.files"].find(
        {"_id": {"$in": [fid for _, fid in old]}, "metadata.attempt": {"$exists": True}}, {"_id": 1})}
    keep = [p for p in old if p[0] not in written and p[1] not in earlier]
    replaced = [p[1] for p in old if p not in keep]
    return keep + [list(p) for p in new_refs], replaced


def delete_trial_file_ids(db: Database, trial: Mapping[str, Any], ids: Iterable[Any]) -> None:
    """Delete the given files if they are attachments of ``trial`` (replaced references)."""
    fs = _fs(db)
    for f in fs.find({"_id": {"$in": list(ids)}, "metadata.kind": "trial", "metadata.tid": int(trial["tid"])}):
        fs.delete(f._id)


class TrialAttachments(MutableMapping):
    """``name -> bytes`` attachments of one trial, resolved through its ``_attachments`` references.

    Writing here (outside a worker: a user's ``trials.trial_attachments(doc)[name] = blob``) stores
    the file and switches the reference at once; workers write through ``jobs.finish`` instead.
    """

    def __init__(self, db: Database, jobs_collection, trial: Mapping[str, Any]):
        self._db, self._fs, self._jobs, self._trial = db, _fs(db), jobs_collection, trial
        self._tid = int(trial["tid"])

    def _refs(self) -> dict[str, Any]:
        """``{name: file_id}`` as the database has them now (the trial dict given may be stale)."""
        pairs = self._trial.get("_attachments") or []
        if "_id" in self._trial:
            pairs = (self._jobs.find_one({"_id": self._trial["_id"]}, {"_attachments": 1}) or {}).get(
                "_attachments") or []
        return {name: file_id for name, file_id in pairs}

    def _unlisted(self, name: str | None = None) -> dict:
        """The query of files ``trial/<tid>/<name>`` written outside a worker (all names if None)."""
        query: dict[str, Any] = {"metadata.kind": "trial", "metadata.tid": self._tid,
                                 "metadata.attempt": {"$exists": False}}
        if name is not None:
            query["filename"] = trial_filename(self._tid, name)
        return query

    def __getitem__(self, name: str) -> bytes:
        file_id = self._refs().get(name)
        if file_id is not None:
            try:
                return read_file(self._db, self._fs.get(file_id))
            except gridfs.NoFile:
                raise KeyError(name) from None
        f = _newest(self._fs, self._unlisted(name))
        if f is None:
            raise KeyError(name)
        return read_file(self._db, f)

    def __setitem__(self, name: str, value: bytes) -> None:
        if "_id" not in self._trial:
            _replace(self._fs, trial_filename(self._tid, name), value, _trial_metadata(self._trial, name))
            return
        new_id = self._fs.put(as_blob(name, value), filename=trial_filename(self._tid, name),
                              metadata=_trial_metadata(self._trial, name))
        previous = _jobs.set_attachment_ref(self._jobs, self._trial, name, new_id)
        stale = [f._id for f in self._fs.find(self._unlisted(name)) if f._id != new_id]
        delete_trial_file_ids(self._db, self._trial,
                              stale + ([previous] if previous is not None and previous != new_id else []))

    def __delitem__(self, name: str) -> None:
        file_id = self._refs().get(name)
        found = [f._id for f in self._fs.find(self._unlisted(name))]
        if file_id is None and not found:
            raise KeyError(name)
        if "_id" in self._trial:
            _jobs.set_attachment_ref(self._jobs, self._trial, name)
        delete_trial_file_ids(self._db, self._trial, found + ([file_id] if file_id is not None else []))

    def _names(self) -> list[str]:
        return sorted(set(self._refs()) | {f.metadata["name"] for f in self._fs.find(self._unlisted()) if f.metadata})

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._refs() or self._fs.exists(self._unlisted(name)))


def delete_trial_files(db: Database, tids: list[int]) -> int:
    """Delete the GridFS files of the given trials' attachments; return how many were deleted."""
    fs, n = _fs(db), 0
    if not tids:
        return 0
    for f in fs.find({"metadata.kind": "trial", "metadata.tid": {"$in": list(tids)}}):
        fs.delete(f._id)
        n += 1
    return n


def delete_experiment_files(db: Database, exp_key: str | None) -> int:
    """Delete an experiment's attachments (``exp/<exp_key>/…``); return how many were deleted."""
    fs, n = _fs(db), 0
    prefix = f"exp/{exp_key or ''}/"
    for f in fs.find({"metadata.kind": "exp", "metadata.exp_key": exp_key}):
        if f.filename.startswith(prefix):
            fs.delete(f._id)
            n += 1
    return n


def delete_domain(db: Database, digest: str) -> int:
    """Delete the domain payload stored under ``digest``; return how many files were deleted."""
    fs, n = _fs(db), 0
    for f in fs.find({"filename": domain_filename(digest)}):
        fs.delete(f._id)
        n += 1
    return n
