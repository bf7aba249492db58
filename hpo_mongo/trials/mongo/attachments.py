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
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, MutableMapping

import gridfs
from pymongo.database import Database

from . import jobs as _jobs

BUCKET = "fs"


def _fs(db: Database) -> gridfs.GridFS:
    return gridfs.GridFS(db, collection=BUCKET)


def _newest(fs: gridfs.GridFS, query: Mapping[str, Any]):
    for f in fs.find(dict(query)).sort("uploadDate", -1).limit(1):
        return f
    return None


def _replace(fs: gridfs.GridFS, filename: str, data: bytes, metadata: dict) -> Any:
    """Store ``data`` under ``filename``, then delete the older files of that name.

    A str is stored UTF-8 encoded (and read back as bytes), as hyperopt's MongoTrials does."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"attachments are bytes or str; got {type(data).__name__} for {filename!r}")
    new_id = fs.put(bytes(data), filename=filename, metadata=metadata)
    for old in fs.find({"filename": filename}):
        if old._id != new_id:
            fs.delete(old._id)
    return new_id


# ----------------------------------------------------------------------------- the domain
def domain_filename(digest: str) -> str:
    return f"domain/{digest}"


def put_domain(db: Database, blob: bytes, digest: str, exp_key: str | None) -> None:
    """Store the packed domain payload under its hash, unless it is already there."""
    fs = _fs(db)
    if fs.exists({"filename": domain_filename(digest)}):
        return
    fs.put(bytes(blob), filename=domain_filename(digest),
           metadata={"kind": "domain", "hash": digest, "exp_key": exp_key})


def get_domain(db: Database, digest: str) -> bytes | None:
    """The packed domain payload with this hash, or None."""
    f = _newest(_fs(db), {"filename": domain_filename(digest)})
    return f.read() if f is not None else None


# ----------------------------------------------------------------------------- experiment attachments
class ExperimentAttachments(MutableMapping):
    """``name -> bytes`` attachments of one experiment (``MongoTrials.attachments``)."""

    def __init__(self, db: Database, exp_key: str | None):
        self._fs, self._exp_key = _fs(db), exp_key
        self._prefix = f"exp/{exp_key or ''}/"

    def __getitem__(self, name: str) -> bytes:
        f = _newest(self._fs, {"filename": self._prefix + name})
        if f is None:
            raise KeyError(name)
        return f.read()

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
        self._fs, self._jobs, self._trial = _fs(db), jobs_collection, trial
        self._tid = int(trial["tid"])

    def __getitem__(self, name: str) -> bytes:
        f = _newest(self._fs, {"filename": trial_filename(self._tid, name)})
        if f is None:
            raise KeyError(name)
        return f.read()

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
