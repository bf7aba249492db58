"""hpo_mongo.trials.mongo.connection: URL forms, the client, error mapping, server clock."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pymongo
import pytest
from pymongo import uri_parser
from pymongo.errors import (AutoReconnect, BulkWriteError, ConfigurationError, ConnectionFailure,
                            DuplicateKeyError, InvalidOperation, NetworkTimeout, NotPrimaryError,
                            OperationFailure, PyMongoError, ServerSelectionTimeoutError, WriteError)

from hpo_mongo.exceptions import (DuplicateTrialError, HpoMongoError, InvalidParameterError, InvalidURLError,
                                  StoreConfigurationError,
                                  StoreError, StoreUnavailable)
from hpo_mongo.trials.mongo.connection import MongoURL, connect, parse_url, server_time, translate_errors

UTC = dt.timezone.utc
SECRET = "s3cr3t-Pw"


# ----------------------------------------------------------------------------- valid URL forms
VALID = [
    # (url, uri, database, collection, display)
    # hyperopt's forms
    ("mongo://localhost:1234/foo_db/jobs", "mongodb://localhost:1234/", "foo_db", "jobs",
     "mongo://localhost:1234/foo_db/jobs"),
    ("mongo://localhost:1234/foo_db/my_jobs", "mongodb://localhost:1234/", "foo_db", "my_jobs", None),
    ("mongo://localhost:1234/foo_db", "mongodb://localhost:1234/", "foo_db", "jobs", None),
    ("mongo://localhost:1234/foo_db/", "mongodb://localhost:1234/", "foo_db", "jobs", None),
    ("mongo://localhost:1234/foo_db/coll/", "mongodb://localhost:1234/", "foo_db", "coll", None),
    ("mongo://localhost/foo_db/jobs", "mongodb://localhost/", "foo_db", "jobs", None),
    ("mongo://localhost", "mongodb://localhost/", "hpo", "jobs", None),
    (f"mongo://bob:{SECRET}@db.example.com:27017/exp/jobs", f"mongodb://bob:{SECRET}@db.example.com:27017/",
     "exp", "jobs", "mongo://bob:***@db.example.com:27017/exp/jobs"),
    ("mongo://bob@h:1/d", "mongodb://bob@h:1/", "d", "jobs", "mongo://bob@h:1/d"),
    # hyperopt form: credentials are literal and get re-encoded for pymongo
    ("mongo://bob:a:b+c@h:1/d", "mongodb://bob:a%3Ab%2Bc@h:1/", "d", "jobs", "mongo://bob:***@h:1/d"),
    ("mongo://bob:p%2Fw@h:1/d", "mongodb://bob:p%2Fw@h:1/", "d", "jobs", "mongo://bob:***@h:1/d"),
    ("MONGO://h:1/d", "mongodb://h:1/", "d", "jobs", None),
    ("mongo://h:1/d?connectTimeoutMS=500", "mongodb://h:1/?connectTimeoutMS=500", "d", "jobs", None),
    # bare forms
    ("localhost:27017/foo_db", "mongodb://localhost:27017/", "foo_db", "jobs", "localhost:27017/foo_db"),
    ("localhost:27017/foo_db/trials", "mongodb://localhost:27017/", "foo_db", "trials", None),
    ("localhost/foo_db", "mongodb://localhost/", "foo_db", "jobs", None),
    ("db.example.com:27018", "mongodb://db.example.com:27018/", "hpo", "jobs", None),
    ("mongo:27017/x", "mongodb://mongo:27017/", "x", "jobs", None),  # a docker-compose host named "mongo"
    ("localhost", "mongodb://localhost/", "hpo", "jobs", None),
    ("127.0.0.1:1", "mongodb://127.0.0.1:1/", "hpo", "jobs", None),
    ("[::1]:27017/d/c", "mongodb://[::1]:27017/", "d", "c", None),
    ("h:65535", "mongodb://h:65535/", "hpo", "jobs", None),
    ("  h:1/d  ", "mongodb://h:1/", "d", "jobs", "h:1/d"),
    (f"bob:{SECRET}@h:1/d", f"mongodb://bob:{SECRET}@h:1/", "d", "jobs", "bob:***@h:1/d"),
    # standard forms
    (f"mongodb://user:{SECRET}@h1:1,h2:2/db?replicaSet=rs&tls=true&authSource=admin",
     f"mongodb://user:{SECRET}@h1:1,h2:2/?replicaSet=rs&tls=true&authSource=admin", "db", "jobs",
     "mongodb://user:***@h1:1,h2:2/db?replicaSet=rs&tls=true&authSource=admin"),
    ("mongodb://h1:1,h2:2/db/coll?replicaSet=rs", "mongodb://h1:1,h2:2/?replicaSet=rs", "db", "coll", None),
    ("mongodb://h", "mongodb://h/", "hpo", "jobs", None),
    ("mongodb://h/", "mongodb://h/", "hpo", "jobs", None),
    ("mongodb://h/?w=majority", "mongodb://h/?w=majority", "hpo", "jobs", None),
    ("mongodb://u%40x:p%3Aw%2F@h:1/d", "mongodb://u%40x:p%3Aw%2F@h:1/", "d", "jobs", "mongodb://u%40x:***@h:1/d"),
    ("mongodb://%2Ftmp%2Fmongodb-27017.sock/d", "mongodb://%2Ftmp%2Fmongodb-27017.sock/", "d", "jobs", None),
    ("mongodb://h/my%2Ddb", "mongodb://h/", "my-db", "jobs", None),
    ("mongodb://h/d/my%2Fcoll", "mongodb://h/", "d", "my/coll", None),
    (f"mongodb+srv://user:{SECRET}@cluster.example.net/db?retryWrites=true",
     f"mongodb+srv://user:{SECRET}@cluster.example.net/?retryWrites=true", "db", "jobs",
     "mongodb+srv://user:***@cluster.example.net/db?retryWrites=true"),
    ("mongodb+srv://cluster0.ab1cd.mongodb.net", "mongodb+srv://cluster0.ab1cd.mongodb.net/", "hpo", "jobs", None),
    ("mongodb+srv://cluster.example.net/db/coll", "mongodb+srv://cluster.example.net/", "db", "coll", None),
]


@pytest.mark.parametrize("url, uri, database, collection, display", VALID, ids=[v[0].strip() for v in VALID])
def test_valid_url_forms(url, uri, database, collection, display):
    u = parse_url(url)
    assert isinstance(u, MongoURL)
    assert (u.uri, u.database, u.collection) == (uri, database, collection)
    assert u.display == (display if display is not None else url.strip())
    assert SECRET not in u.display and SECRET not in repr(u) and SECRET not in str(u)


@pytest.mark.parametrize("url", [v[0] for v in VALID if not v[1].startswith("mongodb+srv")])
def test_uri_is_accepted_by_pymongo(url):
    u = parse_url(url)
    parsed = uri_parser.parse_uri(u.uri)  # no database in the URI: we pass it separately
    assert parsed["database"] is None and parsed["collection"] is None
    assert parsed["nodelist"]


def test_credentials_reach_pymongo_unchanged():
    assert uri_parser.parse_uri(parse_url("mongo://bob:a:b+c@h:1/d").uri)["password"] == "a:b+c"
    assert uri_parser.parse_uri(parse_url("mongo://bob:p%2Fw@h:1/d").uri)["password"] == "p/w"
    parsed = uri_parser.parse_uri(parse_url("mongodb://u%40x:p%3Aw%2F@h:1/d?authSource=admin").uri)
    assert (parsed["username"], parsed["password"], parsed["options"]["authSource"]) == ("u@x", "p:w/", "admin")


def test_srv_form_does_no_dns_lookup(monkeypatch):
    import socket

    import dns.resolver

    def no_dns(*a, **k):
        raise AssertionError("parse_url must not resolve names")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(dns.resolver, "resolve", no_dns)
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", no_dns)
    u = parse_url(f"mongodb+srv://user:{SECRET}@cluster.example.net/db?retryWrites=true&authSource=admin")
    assert u.uri.startswith("mongodb+srv://") and u.database == "db"
    client = connect(u)  # lazy: no DNS either until the first operation
    client.close()


def test_defaults_can_be_changed():
    u = parse_url("h:1", default_db="other", default_collection="trials")
    assert (u.database, u.collection) == ("other", "trials")
    u = parse_url("h:1/d", default_db="other", default_collection="trials")
    assert (u.database, u.collection) == ("d", "trials")


def test_mongo_url_is_frozen():
    u = parse_url("h:1/d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.database = "x"  # type: ignore[misc]
    assert parse_url(u) is u  # an already parsed URL passes through


# ----------------------------------------------------------------------------- environment default
def test_env_default(monkeypatch):
    monkeypatch.setenv("HPO_MONGO_URL", f"mongo://bob:{SECRET}@envhost:4321/envdb/envjobs")
    u = parse_url(None)
    assert (u.database, u.collection, u.display) == ("envdb", "envjobs", "mongo://bob:***@envhost:4321/envdb/envjobs")
    assert parse_url("h:1/d").database == "d"  # an explicit URL wins


@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_url_and_no_env(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("HPO_MONGO_URL", raising=False)
    else:
        monkeypatch.setenv("HPO_MONGO_URL", value)
    with pytest.raises(InvalidURLError) as info:
        parse_url(None)
    msg = str(info.value)
    assert "--mongo" in msg and "HPO_MONGO_URL" in msg and "accepted forms" in msg


def test_bad_env_url_names_it_masked(monkeypatch):
    monkeypatch.setenv("HPO_MONGO_URL", f"mongodb://bob:{SECRET}@h:0/d")
    with pytest.raises(InvalidURLError) as info:
        parse_url(None)
    assert "mongodb://bob:***@h:0/d" in str(info.value) and SECRET not in str(info.value)


# ----------------------------------------------------------------------------- invalid URLs
INVALID = [
    # (url, fragment of the problem)
    ("", "empty"),
    ("h:0/d", "1..65535"),
    ("h:65536/d", "1..65535"),
    ("h:-1/d", "1..65535"),
    ("h:abc/d", "1..65535"),
    ("h:/d", "1..65535"),
    ("h:１２/d", "1..65535"),  # non-ASCII digits
    ("h:1.5/d", "1..65535"),
    ("mongo://h:99999/d/c", "1..65535"),
    ("mongodb://h1:1,h2:x/d", "1..65535"),
    ("http://h/d", "unsupported scheme"),
    ("ftp://h:1", "unsupported scheme"),
    ("mongodb:/h/d", "malformed scheme"),
    ("mongodb://", "no host"),
    ("mongodb:///d", "no host"),
    ("mongo://@h/d", "empty user"),
    (f"mongo://:{SECRET}@h/d", "empty user"),
    ("mongodb://h1:1,,h2:2/d", "empty host"),
    ("mongodb://h/d/c/extra", "/db or /db/collection"),
    ("mongodb://h//c", "empty database"),
    ("mongodb://h/d.b", "database name"),
    ("mongodb://h/d$b", "database name"),
    ("mongodb://h/my%20db", "database name"),
    ("mongodb://h/" + "x" * 64, "longer than 63"),
    ("mongodb://h/d/system.users", "reserved"),
    ("mongodb://h/d/a$b", "collection name"),
    ("mongodb://h/d#frag", "fragment"),
    ("mongodb://h/d?w=1?x=2", "more than one"),
    ("mongo host/d", "whitespace"),
    ("mongodb://h/d?foo=bar", "Unknown option"),
    ("mongodb://h/d?serverSelectionTimeoutMS=abc", "serverselectiontimeoutms"),
    ("mongodb+srv://h1.example.net,h2.example.net/d", "exactly one host"),
    ("mongodb+srv://cluster.example.net:27017/d", "no port"),
    ("mongodb+srv://[::1]/d", "not an IP"),
    ("mongodb+srv://cluster.example.net/d?foo=1", "Unknown option"),
    ("mongodb://h:1:2/d", "IPv6"),
    ("mongodb://[::1/d", "IPv6"),
    ("mongodb://[::1]x/d", "IPv6"),
    ("mongodb://bad_host!/d", "bad host name"),
    # passwords that break the URL: always masked in the message
    (f"mongodb://bob:{SECRET}@x@h/d", "percent-encoded"),
    (f"mongodb://bob:{SECRET}:x@h/d", "percent-encoded"),
    (f"mongodb://bob:{SECRET}/x@h/d", "percent-encode"),
    (f"mongodb://bob:{SECRET}?x@h/d", "percent-encode"),
    (f"mongodb+srv://bob:{SECRET}@x@cluster.example.net/d", "percent-encoded"),
    (f"mongo://bob:{SECRET}@h:0/d", "1..65535"),
    (f"bob:{SECRET}@h:x/d", "1..65535"),
]


@pytest.mark.parametrize("url, problem", INVALID, ids=[i[0] or "<empty>" for i in INVALID])
def test_invalid_urls(url, problem):
    with pytest.raises(InvalidURLError) as info:
        parse_url(url)
    msg = str(info.value)
    assert problem in msg
    assert "accepted forms" in msg and "mongodb+srv://" in msg and "mongo://" in msg
    assert SECRET not in msg
    if url.strip():
        if "@" in url and ":" in url.split("://")[-1].split("@")[0]:
            assert "***" in msg  # names the URL, with the password masked
        else:
            assert repr(url.strip()) in msg  # names the URL as given
    assert isinstance(info.value, InvalidParameterError) and isinstance(info.value, HpoMongoError)


def test_non_string_url():
    with pytest.raises(InvalidURLError, match="must be a string"):
        parse_url(12345)  # type: ignore[arg-type]


def test_masked_password_in_display_keeps_everything_else():
    url = f"mongodb://user:{SECRET}@h1:1,h2:2/db?replicaSet=rs&tls=true"
    assert parse_url(url).display == url.replace(SECRET, "***")


# ----------------------------------------------------------------------------- connect
def test_connect_defaults_are_lazy_and_tz_aware():
    client = connect(parse_url("mongodb://127.0.0.1:1/d"))
    try:
        assert isinstance(client, pymongo.MongoClient)
        assert client.codec_options.tz_aware is True
        assert client.options.server_selection_timeout == 10
        assert client.options.pool_options.connect_timeout == 10
        assert client.options.pool_options.socket_timeout == 60
        assert client.options.pool_options.metadata["application"] == {"name": "hpo_mongo"}
    finally:
        client.close()


def test_connect_url_options_beat_defaults_and_kwargs_beat_both():
    client = connect(parse_url("mongodb://127.0.0.1:1/d?serverSelectionTimeoutMS=2500&appName=mine"))
    try:
        assert client.options.server_selection_timeout == 2.5
        assert client.options.pool_options.metadata["application"] == {"name": "mine"}
    finally:
        client.close()
    client = connect(parse_url("mongodb://127.0.0.1:1/d?serverSelectionTimeoutMS=2500"),
                     serverSelectionTimeoutMS=700, socketTimeoutMS=None)
    try:
        assert client.options.server_selection_timeout == 0.7
        assert client.options.pool_options.socket_timeout is None
    finally:
        client.close()


@pytest.mark.parametrize("kw", [{"server_api": "1"}, {"w": 0}, {"loadBalanced": True}])
def test_connect_refuses_unsupported_options(kw):
    with pytest.raises(InvalidParameterError):
        connect(parse_url("h:1"), **kw)


def test_connect_bad_option_value_is_an_invalid_url():
    with pytest.raises(InvalidURLError) as info:
        connect(parse_url(f"mongodb://bob:{SECRET}@h:1/d"), serverSelectionTimeoutMS="soon")
    assert "mongodb://bob:***@h:1/d" in str(info.value) and SECRET not in str(info.value)


def test_unreachable_server_becomes_store_unavailable():
    from tests.mongo_server import free_port
    client = connect(parse_url(f"127.0.0.1:{free_port()}/d"), serverSelectionTimeoutMS=200)
    try:
        with pytest.raises(StoreUnavailable) as info:
            with translate_errors("pinging"):
                client.admin.command("ping")
        assert isinstance(info.value.__cause__, ServerSelectionTimeoutError)
        assert "pinging" in str(info.value)
    finally:
        client.close()


# ----------------------------------------------------------------------------- error mapping
def _bulk_error(*codes):
    return BulkWriteError({"writeErrors": [{"index": i, "code": c, "errmsg": f"E{c}"} for i, c in enumerate(codes)],
                           "nInserted": 0})


MAPPING = [
    (AutoReconnect("connection reset"), StoreUnavailable),
    (NetworkTimeout("timed out"), StoreUnavailable),
    (ServerSelectionTimeoutError("no servers"), StoreUnavailable),
    (NotPrimaryError("not primary"), StoreUnavailable),
    (ConnectionFailure("down"), StoreUnavailable),
    (DuplicateKeyError("E11000 duplicate key", 11000), DuplicateTrialError),
    (OperationFailure("E11000 via findAndModify", 11000), DuplicateTrialError),
    (_bulk_error(11000), DuplicateTrialError),
    (_bulk_error(11000, 11000), DuplicateTrialError),
    (_bulk_error(11000, 2), StoreError),
    (OperationFailure("bad query", 2), StoreError),
    (WriteError("doc too big", 10334), StoreError),
    (ConfigurationError("bad config"), StoreConfigurationError),
    (OperationFailure("Authentication failed.", 18), StoreConfigurationError),
    (OperationFailure("not authorized on hpo to execute command", 13), StoreConfigurationError),
    (OperationFailure("no such command: 'saslStart'", 59), StoreConfigurationError),
    (OperationFailure("no such command: 'frobnicate'", 59), StoreError),
    (InvalidOperation("client closed"), StoreError),
    (PyMongoError("something"), StoreError),
]


@pytest.mark.parametrize("err, expected", MAPPING,
                         ids=[f"{type(e).__name__}-{expected.__name__}" for e, expected in MAPPING])
def test_translate_errors_mapping(err, expected):
    with pytest.raises(StoreError) as info:
        with translate_errors("claiming a trial"):
            raise err
    assert type(info.value) is expected
    assert info.value.__cause__ is err
    if expected is StoreConfigurationError:  # says what to fix, not which operation met it
        assert any(w in str(info.value) for w in ("check", "remove", "needs"))
    else:
        assert "claiming a trial" in str(info.value)


def test_configuration_messages_say_what_to_fix():
    with pytest.raises(StoreConfigurationError, match=r"^MongoDB authentication failed \(Authentication failed\.\); "
                                                      r"check the user name, password and authSource in the URL$"):
        with translate_errors("reading the server time"):
            raise OperationFailure("Authentication failed.", 18, {"errmsg": "Authentication failed.", "code": 18})
    srv = ConfigurationError("The DNS query name does not exist: _mongodb._tcp.nonexistent.invalid.")
    with pytest.raises(StoreConfigurationError, match=r"^cannot resolve the mongodb\+srv:// host name"):
        with translate_errors("x"):
            raise srv


def test_translate_errors_leaves_other_errors_alone():
    with pytest.raises(KeyError):
        with translate_errors("x"):
            raise KeyError("k")
    ours = StoreUnavailable("already ours")
    with pytest.raises(StoreUnavailable) as info:
        with translate_errors("x"):
            raise ours
    assert info.value is ours
    with translate_errors("x"):
        pass  # no error: nothing happens


def test_translate_errors_default_name_and_decorators():
    with pytest.raises(StoreError, match="a database operation"):
        with translate_errors():
            raise OperationFailure("boom", 2)

    @translate_errors("saving the result")
    def save():
        raise AutoReconnect("gone")

    with pytest.raises(StoreUnavailable, match="saving the result"):
        save()

    @translate_errors
    def load_trial(x):
        if x:
            raise DuplicateKeyError("dup", 11000)
        return 42

    assert load_trial(0) == 42 and load_trial.__name__ == "load_trial"
    with pytest.raises(DuplicateTrialError, match="load_trial"):
        load_trial(1)


def test_translate_errors_messages_are_one_line():
    with pytest.raises(StoreUnavailable) as info:
        with translate_errors("x"):
            raise ServerSelectionTimeoutError("a\nb\n\nc" + "y" * 1000)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 500


# ----------------------------------------------------------------------------- server time
class FakeDB:
    """Answers db.command() from a dict: a reply dict, or an exception to raise."""

    def __init__(self, replies):
        self.replies, self.asked = replies, []

    def command(self, name):
        self.asked.append(name)
        reply = self.replies.get(name, OperationFailure(f"no such command: {name}", 59))
        if isinstance(reply, BaseException):
            raise reply
        return reply


T = dt.datetime(2030, 1, 2, 3, 4, 5, 678000)


def test_server_time_naive_reply_is_utc():
    assert server_time(FakeDB({"isMaster": {"localTime": T, "ok": 1}})) == T.replace(tzinfo=UTC)


def test_server_time_aware_reply_is_converted_to_utc():
    cet = dt.timezone(dt.timedelta(hours=1))
    got = server_time(FakeDB({"isMaster": {"localTime": T.replace(tzinfo=cet)}}))
    assert got.tzinfo == UTC and got == T.replace(tzinfo=cet)


def test_server_time_falls_back_to_server_status():
    db = FakeDB({"isMaster": {"ismaster": True}, "serverStatus": {"localTime": T}})
    assert server_time(db) == T.replace(tzinfo=UTC)
    assert db.asked[0] == "isMaster" and db.asked[-1] == "serverStatus"
    db = FakeDB({"isMaster": OperationFailure("unknown command", 59), "serverStatus": {"localTime": T}})
    assert server_time(db) == T.replace(tzinfo=UTC)


def test_server_time_without_local_time_is_a_store_error():
    with pytest.raises(StoreError, match="localTime"):
        server_time(FakeDB({"isMaster": {"ok": 1}, "serverStatus": OperationFailure("unauthorized", 13)}))


def test_server_time_unreachable_is_store_unavailable():
    with pytest.raises(StoreUnavailable, match="server time"):
        server_time(FakeDB({"isMaster": AutoReconnect("gone")}))


@pytest.mark.server
def test_server_time_on_the_real_server(mongo_db):
    before = dt.datetime.now(UTC)
    t = server_time(mongo_db)
    after = dt.datetime.now(UTC)
    assert t.tzinfo is not None and t.utcoffset() == dt.timedelta(0)
    # same machine: the clocks agree up to the server's millisecond resolution and a little slack
    assert before - dt.timedelta(seconds=5) <= t <= after + dt.timedelta(seconds=5)
    mongo_db.clock.insert_one({"_id": 1})
    mongo_db.clock.update_one({"_id": 1}, {"$currentDate": {"at": True}})
    at = mongo_db.clock.find_one({"_id": 1})["at"]
    assert t - dt.timedelta(seconds=1) <= at <= server_time(mongo_db) + dt.timedelta(seconds=1)


@pytest.mark.server
def test_connect_against_the_real_server(mongo_url):
    u = parse_url(mongo_url)
    assert re.fullmatch(r"hpo_test_[0-9a-f]{32}", u.database) and u.collection == "jobs"
    client = connect(u)
    try:
        coll = client[u.database][u.collection]
        with translate_errors("smoke test"):
            coll.insert_one({"tid": 0, "at": dt.datetime(2030, 1, 1, tzinfo=UTC)})
            doc = coll.find_one({"tid": 0})
        assert doc["at"].tzinfo is not None  # tz_aware client
        coll.create_index("tid", unique=True)
        with pytest.raises(DuplicateTrialError):
            with translate_errors("inserting a trial"):
                coll.insert_one({"tid": 0})
        assert coll.count_documents({}) == 1
    finally:
        client.close()
