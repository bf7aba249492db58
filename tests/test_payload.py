"""hpo_mongo.payload: pickling with culprit names, signing, refusal of unsigned/tampered payloads."""
from __future__ import annotations

import pickle
import threading

import pytest

from hpo_mongo import hp
from hpo_mongo.domain import Domain
from hpo_mongo.exceptions import InvalidParameterError, ObjectiveLoadError, PayloadSignatureError, PicklingError
from hpo_mongo.payload import (SECRET_ENV, dumps_domain, load_secret, loads_domain, pack_payload,
                               payload_hash, unpack_payload)

SECRET = b"correct horse battery staple"

lock = threading.RLock()


class _Holder:
    def __init__(self):
        self.handle = threading.Lock()


holder = _Holder()


def _objective_with_lock(x):
    with lock:
        return x


def _objective_with_default(x, h=holder):
    return x


def _objective_with_attr(x):
    return holder.handle, x


def test_round_trip_unsigned():
    def f(d):
        return d["x"] ** 2
    raw = dumps_domain(Domain(f, {"x": hp.uniform("x", -1, 1)}))
    blob = pack_payload(raw, None, {"kind": "domain", "exp_key": "e"})
    body, meta = unpack_payload(blob, None)
    assert body == raw
    assert meta["kind"] == "domain" and meta["exp_key"] == "e" and meta["signed"] is False
    assert {"python", "cloudpickle", "hpo_mongo", "format"} <= set(meta)
    dom = loads_domain(body, meta)
    assert dom.evaluate({"x": [0.5]})[0] == {"loss": 0.25, "status": "ok"}


def test_round_trip_signed_and_hash_is_deterministic():
    raw = dumps_domain(lambda x: x)
    a = pack_payload(raw, SECRET, {"kind": "domain"})
    b = pack_payload(raw, SECRET, {"kind": "domain"})
    assert a == b and payload_hash(a) == payload_hash(b) and len(payload_hash(a)) == 64
    body, meta = unpack_payload(a, SECRET)
    assert body == raw and meta["signed"] is True
    assert loads_domain(body, meta)(7) == 7
    # a signed payload is still readable by a worker without a secret
    assert unpack_payload(a, None)[0] == raw


def test_unsigned_refused_when_secret_set():
    blob = pack_payload(dumps_domain(lambda x: x), None, {})
    with pytest.raises(PayloadSignatureError, match="payload is not signed but this worker requires signatures"):
        unpack_payload(blob, SECRET)


def test_bare_pickle_accepted_without_secret_refused_with():
    raw = dumps_domain(lambda x: x + 1)
    body, meta = unpack_payload(raw, None)
    assert loads_domain(body, meta)(1) == 2
    with pytest.raises(PayloadSignatureError, match="not signed"):
        unpack_payload(raw, SECRET)


@pytest.mark.parametrize("where", ["body", "mac", "header", "truncate", "append"])
def test_tampered_refused(where):
    raw = dumps_domain(lambda x: x)
    blob = bytearray(pack_payload(raw, SECRET, {"kind": "domain"}))
    if where == "body":
        blob[-40] ^= 0xFF
    elif where == "mac":
        blob[-1] ^= 0x01
    elif where == "header":
        i = blob.index(b'"domain"')
        blob[i + 1:i + 7] = b"dumain"
    elif where == "truncate":
        del blob[-5:]
    else:
        blob += b"x"
    with pytest.raises(PayloadSignatureError) as info:
        unpack_payload(bytes(blob), SECRET)
    assert "nothing was" in str(info.value)


def test_stripping_the_signature_does_not_help():
    raw = dumps_domain(lambda x: x)
    signed = pack_payload(raw, SECRET, {})
    unsigned = pack_payload(raw, None, {})
    assert signed[:-32] != unsigned  # the header records signed=True
    with pytest.raises(PayloadSignatureError):
        unpack_payload(signed[:-32], SECRET)


def test_wrong_secret_refused():
    blob = pack_payload(dumps_domain(lambda x: x), SECRET, {})
    with pytest.raises(PayloadSignatureError, match="does not match"):
        unpack_payload(blob, b"another secret")


def test_signature_checked_before_unpickling(tmp_path):
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    raw = pickle.dumps(Evil())
    blob = bytearray(pack_payload(raw, b"attacker's secret", {}))
    with pytest.raises(PayloadSignatureError):
        body, meta = unpack_payload(bytes(blob), SECRET)
        loads_domain(body, meta)
    assert not marker.exists()


@pytest.mark.parametrize("fn, expected", [
    (_objective_with_lock, r"global 'lock' \(a _thread.RLock\)"),
    (_objective_with_default, r"attribute 'handle' \(a _thread.lock\) of default argument 'h'"),
    (_objective_with_attr, r"attribute 'handle' \(a _thread.lock\) of global 'holder'"),
])
def test_pickling_error_names_culprit(fn, expected, monkeypatch):
    # functions of an importable module are pickled by reference; pretend they live in __main__
    monkeypatch.setattr(fn, "__module__", "__main__")
    with pytest.raises(PicklingError, match=expected) as info:
        dumps_domain(Domain(fn, hp.uniform("x", 0, 1)))
    assert "cannot pickle the objective" in str(info.value)
    assert isinstance(info.value, InvalidParameterError)


def test_pickling_error_in_closure():
    lk = threading.Lock()

    def f(x):
        with lk:
            return x
    with pytest.raises(PicklingError, match=r"closure variable 'lk' \(a _thread.lock\)"):
        dumps_domain(f)


def test_missing_module_names_module_and_versions():
    import json
    raw = pickle.dumps(json.dumps).replace(b"json", b"jxqz")  # a module the worker does not have
    with pytest.raises(ObjectiveLoadError) as info:
        loads_domain(raw, {"python": "3.9.1", "cloudpickle": "1.6.0", "hpo_mongo": "0.0.1"})
    msg = str(info.value)
    assert "module 'jxqz' is not installed" in msg
    assert "driver: python 3.9.1, cloudpickle 1.6.0" in msg
    assert "worker: python 3." in msg and "cloudpickle" in msg


def test_missing_attribute_in_main():
    raw = pickle.dumps(pickle.loads)  # a reference to pickle.loads...
    raw = raw.replace(b"loads", b"nopes")  # ...now to a name pickle does not define
    with pytest.raises(ObjectiveLoadError, match="does not define"):
        loads_domain(raw, {})


def test_load_secret(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert load_secret() is None
    monkeypatch.setenv(SECRET_ENV, "  s3cret \n")
    assert load_secret() == b"s3cret"
    f = tmp_path / "secret"
    f.write_bytes(b"from-file\n")
    assert load_secret(f) == b"from-file"  # an explicit file wins over the environment
    with pytest.raises(InvalidParameterError, match="cannot read the secret file"):
        load_secret(tmp_path / "missing")
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(InvalidParameterError, match="is empty"):
        load_secret(tmp_path / "empty")


def test_secret_file_loose_mode_warns_and_a_huge_file_is_refused(tmp_path, caplog):
    loose = tmp_path / "loose"
    loose.write_bytes(b"s3cret\n")
    loose.chmod(0o640)
    caplog.set_level("WARNING", logger="hpo_mongo.payload")
    assert load_secret(loose) == b"s3cret"
    assert "can be accessed by group or others (mode 0640)" in caplog.text
    caplog.clear()
    loose.chmod(0o600)
    assert load_secret(loose) == b"s3cret" and caplog.text == ""
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (1 << 20))
    with pytest.raises(InvalidParameterError, match="larger than 65536 bytes"):
        load_secret(huge)
    with pytest.raises(InvalidParameterError, match="not a regular file \\(a directory\\)"):
        load_secret(tmp_path)
