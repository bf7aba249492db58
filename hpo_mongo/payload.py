"""Pickled payloads (the domain, and anything else a driver hands to workers): pickle, sign, check, load.

Wire format of a packed payload (all of it is hashed by :func:`payload_hash`)::

    b"HPOMPAY\\x01" | 4-byte big-endian header length | header (JSON, sorted keys) | body | [32-byte HMAC]

The header records the format version, the packer's python / cloudpickle / hpo_mongo versions,
whether the payload is signed, the body length and the caller's ``meta``. With a shared secret
the last 32 bytes are HMAC-SHA256(secret, everything before them): a worker holding the same
secret refuses a payload that is unsigned or whose MAC does not match, *before* unpickling
anything. Without a secret nothing is checked (anyone who can write to the database can then
make workers run code — see docs/security.md).

A blob that does not start with the magic is treated as a bare pickle (hyperopt's format): it is
accepted only when no secret is set.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pickle
import platform
import re
import stat
import struct
import types
from typing import Any, Iterator

from ._version import __version__
from .exceptions import InvalidParameterError, ObjectiveLoadError, PayloadSignatureError, PicklingError

#: a domain payload larger than this (objective plus the data it captures) is reported at fmin start
PAYLOAD_WARN_BYTES = 16 * 1024 * 1024
MAGIC = b"HPOMPAY\x01"
FORMAT_VERSION = 1
MAC_SIZE = 32
SECRET_ENV = "HPO_MONGO_SECRET"
_RESERVED = ("format", "python", "cloudpickle", "hpo_mongo", "signed", "body_length")
#: the largest secret file read (a secret is a few dozen bytes)
MAX_SECRET_FILE = 64 * 1024

logger = logging.getLogger("hpo_mongo.payload")


def _cloudpickle():
    import cloudpickle
    return cloudpickle


def local_versions() -> dict[str, str]:
    """This process's python / cloudpickle / hpo_mongo versions (as recorded in a header)."""
    return {"python": platform.python_version(), "cloudpickle": _cloudpickle().__version__,
            "hpo_mongo": __version__}


def size_warning(n_bytes: int) -> str | None:
    """The message fmin logs for a domain payload of ``n_bytes`` above :data:`PAYLOAD_WARN_BYTES`
    (None below): its size and what to do about it."""
    if n_bytes <= PAYLOAD_WARN_BYTES:
        return None
    return (f"the pickled objective is {n_bytes / 2**20:.1f} MB (over {PAYLOAD_WARN_BYTES / 2**20:.0f} MB), "
            "mostly data it captures: it is stored in GridFS and every worker downloads and unpickles it "
            "before its first trial. Load large data inside the objective instead (from a path or URL every "
            "worker can reach, or a module installed on the workers), and capture only its location")


# ----------------------------------------------------------------------------- pickling
def dumps_domain(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, checked by loading it back.

    On failure raises :class:`PicklingError` naming the object that could not be pickled (a global,
    closure variable, default argument or attribute reachable from the objective), e.g.
    ``cannot pickle the objective: global 'lock' (a _thread.RLock) ...``.
    """
    cp = _cloudpickle()
    try:
        raw = cp.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - any failure is reported with the culprit
        raise PicklingError(_describe_failure(obj, e)) from e
    try:
        pickle.loads(raw)
    except Exception as e:  # noqa: BLE001
        raise PicklingError(
            f"the objective pickles but cannot be loaded back ({type(e).__name__}: {e}); workers would "
            f"fail the same way. Objects whose __reduce__/__setstate__ do not round-trip must be created "
            f"inside the objective instead of captured from the driver.") from e
    return raw


def _try_pickle(obj: Any) -> BaseException | None:
    try:
        _cloudpickle().dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001
        return e
    return None


def _type_name(obj: Any) -> str:
    t = type(obj)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _children(obj: Any, depth: int) -> Iterator[tuple[str, Any]]:
    """(description, child) pairs a pickle of ``obj`` would include, most specific first."""
    if depth > 6:
        return
    # hpo_mongo's Domain: the objective and the space
    if type(obj).__name__ == "Domain" and hasattr(obj, "fn") and hasattr(obj, "expr"):
        yield "the objective function", obj.fn
        yield "the search space", obj.expr
        for k, v in vars(obj).items():
            if k not in ("fn", "expr", "space"):
                yield f"Domain attribute {k!r}", v
        return
    if isinstance(obj, types.MethodType):
        yield "the bound instance (self)", obj.__self__
        yield from _children(obj.__func__, depth)
        return
    if isinstance(obj, __import__("functools").partial):
        yield "the partial's function", obj.func
        for i, a in enumerate(obj.args):
            yield f"partial argument {i}", a
        for k, a in (obj.keywords or {}).items():
            yield f"partial keyword {k!r}", a
        return
    if isinstance(obj, types.FunctionType):
        if _by_reference(obj):  # pickled as "module.name": nothing it references is pickled
            return
        code = obj.__code__
        for name, cell in zip(code.co_freevars, obj.__closure__ or (), strict=True):
            try:
                yield f"closure variable {name!r}", cell.cell_contents
            except ValueError:
                continue
        g = obj.__globals__
        # is the function pickled by reference (importable) or by value? cloudpickle pickles by value
        # functions of __main__ / unimportable modules, and then their referenced globals too.
        for name in _global_names(code):
            if name in g:
                yield f"global {name!r}", g[name]
        defaults = obj.__defaults__ or ()
        for i, d in enumerate(defaults):
            argnames = code.co_varnames[:code.co_argcount]
            label = argnames[len(argnames) - len(defaults) + i] if argnames else str(i)
            yield f"default argument {label!r}", d
        for k, d in (obj.__kwdefaults__ or {}).items():
            yield f"default argument {k!r}", d
        return
    if isinstance(obj, dict):
        for k, v in list(obj.items())[:1000]:
            yield f"key {k!r}", v
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(list(obj)[:1000]):
            yield f"item {i}", v
        return
    if isinstance(obj, (type, types.ModuleType)):
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        for k, v in state.items():
            yield f"attribute {k!r}", v


def _by_reference(obj: Any) -> bool:
    try:
        from cloudpickle.cloudpickle import _should_pickle_by_reference
        return bool(_should_pickle_by_reference(obj))
    except Exception:  # noqa: BLE001 - private API; assume by value
        return False


def _global_names(code: types.CodeType) -> Iterator[str]:
    seen: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        for n in c.co_names:
            if n not in seen:
                seen.add(n)
                yield n
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


def _find_culprit(obj: Any, path: list[str], depth: int, seen: set[int]) -> tuple[list[str], Any, BaseException] | None:
    """Descend into the first unpicklable child, as deep as the failure goes."""
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    for desc, child in _children(obj, depth):
        if isinstance(child, types.ModuleType):
            continue
        err = _try_pickle(child)
        if err is None:
            continue
        deeper = _find_culprit(child, path + [desc], depth + 1, seen)
        return deeper if deeper is not None else (path + [desc], child, err)
    return None


def _describe_failure(obj: Any, error: BaseException) -> str:
    found = None
    try:
        found = _find_culprit(obj, [], 0, set())
    except Exception:  # noqa: BLE001 - the search is best effort; the original error is still reported
        found = None
    why = f"{type(error).__name__}: {error}"
    if found is None:
        what = f"the objective ({_type_name(obj)})"
        return (f"cannot pickle the objective: {what} cannot be pickled ({why}). Workers receive the objective "
                f"pickled with cloudpickle: define it in an importable module or make everything it uses picklable.")
    path, culprit, err = found
    # "global 'lock' (a _thread.RLock)", or "attribute 'x' of global 'model' (a foo.Bar)"
    desc = f"{path[-1]} (a {_type_name(culprit)})" + "".join(f" of {p}" for p in reversed(path[:-1]))
    return (f"cannot pickle the objective: {desc} cannot be pickled "
            f"({type(err).__name__}: {err}). Workers receive the objective pickled with cloudpickle, with "
            f"everything it references; create this object inside the objective (or load it there from a "
            f"file), or pass something picklable instead.")


# ----------------------------------------------------------------------------- packing
def pack_payload(raw: bytes, secret: bytes | str | None, meta: dict | None = None) -> bytes:
    """Wrap pickled bytes with a versioned header and, with ``secret``, an HMAC-SHA256 signature."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise InvalidParameterError(f"pack_payload needs the pickled bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    header = {k: v for k, v in (meta or {}).items() if k not in _RESERVED}
    header.update(local_versions())
    header.update(format=FORMAT_VERSION, signed=bool(secret), body_length=len(raw))
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":"), default=str).encode()
    blob = MAGIC + struct.pack(">I", len(hbytes)) + hbytes + raw
    if secret:
        blob += hmac.new(_secret_bytes(secret), blob, hashlib.sha256).digest()
    return blob


def _secret_bytes(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _parse(blob: bytes) -> tuple[dict, int, int] | None:
    """(header, body start, body end) of a packed payload; None for a bare pickle."""
    if not blob.startswith(MAGIC):
        return None
    try:
        (hlen,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
        start = len(MAGIC) + 4
        header = json.loads(blob[start:start + hlen].decode())
        body_start = start + hlen
        body_end = body_start + int(header["body_length"])
        expected = body_end + (MAC_SIZE if header.get("signed") else 0)
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise PayloadSignatureError(f"the payload header is corrupt ({type(e).__name__}: {e}); "
                                    f"nothing was unpickled") from e
    if not isinstance(header, dict) or len(blob) != expected:
        raise PayloadSignatureError(
            f"the payload is truncated or has extra bytes ({len(blob)} bytes, expected {expected}); "
            f"nothing was unpickled")
    return header, body_start, body_end


_UNSIGNED_REFUSED = (
    "payload is not signed but this worker requires signatures (a shared secret is set via "
    f"{SECRET_ENV} or --secret-file); the payload was refused and nothing was executed. Run the "
    "driver with the same secret.")


def unpack_payload(blob: bytes, secret: bytes | str | None) -> tuple[bytes, dict]:
    """Check and unwrap a packed payload: ``(pickled bytes, meta)``.

    ``meta`` is the header: the caller's keys plus ``python``, ``cloudpickle``, ``hpo_mongo`` (the
    packer's versions), ``format`` and ``signed``. With ``secret`` set, an unsigned payload or one
    whose signature does not match raises :class:`PayloadSignatureError` (nothing is unpickled).
    """
    blob = bytes(blob)
    parsed = _parse(blob)
    if parsed is None:
        if secret:
            raise PayloadSignatureError(_UNSIGNED_REFUSED)
        return blob, {"format": 0, "signed": False}
    header, start, end = parsed
    if header.get("format", 0) > FORMAT_VERSION:
        raise ObjectiveLoadError(
            f"the payload uses format {header.get('format')} (written by hpo_mongo {header.get('hpo_mongo')}); "
            f"this worker (hpo_mongo {__version__}) reads format <= {FORMAT_VERSION}: upgrade the worker")
    if secret:
        if not header.get("signed"):
            raise PayloadSignatureError(_UNSIGNED_REFUSED)
        expected = hmac.new(_secret_bytes(secret), blob[:end], hashlib.sha256).digest()
        if not hmac.compare_digest(expected, blob[end:]):
            raise PayloadSignatureError(
                "payload signature does not match: it was tampered with or signed with a different secret; "
                "the payload was refused and nothing was executed. Check that the driver and the workers "
                f"share the same {SECRET_ENV} / --secret-file.")
    return blob[start:end], header


def payload_hash(blob: bytes) -> str:
    """sha256 hex digest of a (packed) payload — the content address of the domain."""
    return hashlib.sha256(bytes(blob)).hexdigest()


# ----------------------------------------------------------------------------- loading
def _versions_note(meta: dict) -> str:
    mine = local_versions()
    return (f"driver: python {meta.get('python', '?')}, cloudpickle {meta.get('cloudpickle', '?')}, "
            f"hpo_mongo {meta.get('hpo_mongo', '?')}; worker: python {mine['python']}, cloudpickle "
            f"{mine['cloudpickle']}, hpo_mongo {mine['hpo_mongo']}")


def loads_domain(raw: bytes, meta: dict | None = None) -> Any:
    """Unpickle a domain; on failure raise :class:`ObjectiveLoadError` with both sides' versions."""
    meta = meta or {}
    _cloudpickle()  # cloudpickle's reconstructors must be importable
    try:
        return pickle.loads(raw)
    except ModuleNotFoundError as e:
        mod = e.name or str(e)
        raise ObjectiveLoadError(
            f"cannot load the objective on this worker: module {mod!r} is not installed or not importable "
            f"(ModuleNotFoundError: {e}). Install it where the worker runs, or put its directory on "
            f"PYTHONPATH / start the worker with --workdir there ({_versions_note(meta)})") from e
    except AttributeError as e:
        msg = str(e)
        hint = ""
        m = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", msg)
        if m:
            hint = (f" The pickle refers to {m.group(2)}.{m.group(1)}, which this worker's copy of "
                    f"{m.group(2)!r} does not define: deploy the same code as the driver.")
        if meta.get("cloudpickle") and meta.get("cloudpickle") != local_versions()["cloudpickle"]:
            hint += " The cloudpickle versions differ: install the driver's version on the worker."
        raise ObjectiveLoadError(
            f"cannot load the objective on this worker (AttributeError: {msg}).{hint} ({_versions_note(meta)})") from e
    except Exception as e:  # noqa: BLE001
        hint = ""
        if meta.get("python") and meta["python"].split(".")[:2] != local_versions()["python"].split(".")[:2]:
            hint = " The python versions differ: run the workers with the driver's python version."
        elif meta.get("cloudpickle") and meta.get("cloudpickle") != local_versions()["cloudpickle"]:
            hint = " The cloudpickle versions differ: install the driver's version on the worker."
        raise ObjectiveLoadError(
            f"cannot load the objective on this worker ({type(e).__name__}: {e}).{hint} ({_versions_note(meta)})"
        ) from e


# ----------------------------------------------------------------------------- secret
def load_secret(secret_file: str | os.PathLike | None = None) -> bytes | None:
    """The shared signing secret: the content of ``secret_file`` (surrounding whitespace stripped)
    or the ``HPO_MONGO_SECRET`` environment variable; ``None`` when neither is set.

    The file must be a regular file of at most :data:`MAX_SECRET_FILE` bytes (a FIFO or a device
    such as ``/dev/zero`` is refused, never read); one that group or others may access is used
    with a warning, as ssh does for private keys.
    """
    if secret_file is not None and str(secret_file) != "":
        path = os.path.expanduser(os.fspath(secret_file))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise InvalidParameterError(f"cannot read the secret file {path!r}: {e.strerror or e}") from e
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise InvalidParameterError(f"the secret file {path!r} is not a regular file "
                                            f"({_file_kind(mode)}); put the secret in a file (chmod 600)")
            if mode & 0o077:
                logger.warning("the secret file %r can be accessed by group or others (mode %04o): anyone who "
                               "can read it can run code on every worker; restrict it with: chmod 600 %s",
                               path, stat.S_IMODE(mode), path)
            chunks, size = [], 0
            while size <= MAX_SECRET_FILE:
                chunk = os.read(fd, MAX_SECRET_FILE + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as e:
            raise InvalidParameterError(f"cannot read the secret file {path!r}: {e.strerror or e}") from e
        finally:
            os.close(fd)
        if size > MAX_SECRET_FILE:
            raise InvalidParameterError(f"the secret file {path!r} is larger than {MAX_SECRET_FILE} bytes; "
                                        f"is it the right file?")
        data = b"".join(chunks).strip()
        if not data:
            raise InvalidParameterError(f"the secret file {path!r} is empty")
        return data
    env = os.environ.get(SECRET_ENV, "")
    if env.strip():
        return env.strip().encode()
    return None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"
