"""hpo_mongo.trials.outage: the one backoff policy (retry, the shared outage clock)."""
import logging
import threading

import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from hpo_mongo.exceptions import DuplicateTrialError, InvalidParameterError, StoreError, StoreUnavailable
from hpo_mongo.trials.outage import Disconnected, Outage, retry


class Flaky:
    """Fails ``n`` times with ``err`` (a callable making the exception), then returns ``value``."""

    def __init__(self, n, err=lambda: AutoReconnect("connection refused"), value="ok"):
        self.n, self.err, self.value, self.calls = n, err, value, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.n:
            raise self.err()
        return self.value


def test_retry_max_wait_zero_tries_once():
    sleeps = []
    fn = Flaky(1)
    with pytest.raises(StoreUnavailable):
        retry(fn, what="x", max_wait=0, sleep=sleeps.append)
    assert fn.calls == 1 and sleeps == []


def test_retry_also_retries_store_unavailable():
    sleeps = []
    fn = Flaky(2, err=lambda: StoreUnavailable("mapped already"))
    assert retry(fn, what="x", sleep=sleeps.append) == "ok" and len(sleeps) == 2


@pytest.mark.parametrize("err", [lambda: OperationFailure("bad", 2), lambda: DuplicateTrialError("dup"),
                                 lambda: StoreError("other"), lambda: ValueError("bug")])
def test_retry_does_not_retry_other_errors(err):
    sleeps = []
    fn = Flaky(1, err=err)
    with pytest.raises(type(err())):
        retry(fn, what="x", sleep=sleeps.append)
    assert fn.calls == 1 and sleeps == []


@pytest.mark.parametrize("kw", [{"max_wait": -1}, {"base": 0}, {"base": -1}, {"base": 2, "cap": 1}])
def test_retry_rejects_bad_parameters(kw):
    with pytest.raises(InvalidParameterError):
        retry(lambda: 1, what="x", **kw)


def test_retry_docstring_says_idempotent():
    assert "idempotent" in (retry.__doc__ or "").lower()


def _bounds(n, base=0.1, cap=5.0):
    """The allowed range of the n-th delay (1-based): 50..100 % of the capped exponential."""
    d = min(cap, base * 2 ** (n - 1))
    return 0.5 * d, d


def test_retry_returns_at_once_without_sleeping():
    sleeps = []
    assert retry(lambda: 7, what="x", sleep=sleeps.append) == 7
    assert sleeps == []


def test_retry_backs_off_exponentially_with_jitter_and_logs(caplog):
    sleeps = []
    fn = Flaky(8)
    with caplog.at_level(logging.INFO, logger="hpo_mongo.outage"):
        assert retry(fn, what="claiming a trial", sleep=sleeps.append) == "ok"
    assert fn.calls == 9 and len(sleeps) == 8
    for n, s in enumerate(sleeps, 1):
        lo, hi = _bounds(n)
        assert lo <= s <= hi, (n, s)
    assert max(sleeps) <= 5.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == ("the store is unreachable (claiming a trial: connection refused); retrying with "
                           "backoff") and warnings[1].startswith("the store is reachable again after")
    assert len(warnings) == 2  # one line when the outage begins, one when it ends
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for n, (msg, s) in enumerate(zip(infos, sleeps, strict=True), 1):
        assert msg == f"still unreachable during claiming a trial (attempt {n}); next attempt in {s:.1f}s"
    assert all("\n" not in m for m in warnings + infos)


def test_retry_jitter_varies():
    runs = set()
    for _ in range(5):
        sleeps = []
        retry(Flaky(3), what="x", sleep=sleeps.append)
        runs.add(tuple(sleeps))
    assert len(runs) > 1


def test_retry_custom_base_cap_and_logger(caplog):
    sleeps = []
    log = logging.getLogger("test.retry.custom")
    with caplog.at_level(logging.INFO, logger="test.retry.custom"):
        retry(Flaky(6), what="x", base=1.0, cap=2.0, logger=log, sleep=sleeps.append)
    assert all(_bounds(n, 1.0, 2.0)[0] <= s <= _bounds(n, 1.0, 2.0)[1] for n, s in enumerate(sleeps, 1))
    assert max(sleeps) <= 2.0
    assert {r.name for r in caplog.records} == {"test.retry.custom"}


def test_retry_forever_when_max_wait_is_none():
    sleeps = []
    fn = Flaky(200)
    assert retry(fn, what="x", max_wait=None, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 200 and max(sleeps) <= 5.0 and sum(sleeps) > 100


def test_retry_gives_up_after_max_wait():
    sleeps = []
    fn = Flaky(10**6)
    with pytest.raises(StoreUnavailable) as info:
        retry(fn, what="reading trials", max_wait=30, sleep=sleeps.append)
    assert sum(sleeps) == pytest.approx(30)  # the last delay is trimmed to the budget
    assert all(s > 0 for s in sleeps) and max(sleeps) <= 5.0
    assert isinstance(info.value.__cause__, AutoReconnect)
    msg = str(info.value)
    assert "reading trials" in msg and "gave up" in msg and f"{fn.calls} attempts" in msg
    assert fn.calls == len(sleeps) + 1


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_an_outage_is_one_clock_shared_by_every_call():
    clock = FakeClock()
    outage = Outage(10.0, limit_name="--max-disconnect", clock=clock)
    assert retry(Flaky(3), what="a", outage=outage, sleep=clock.sleep) == "ok"  # ~0.35 s of outage, then over
    assert outage.down_since is None
    # a new outage: two operations share its clock; the second gives up when the outage reaches 10 s
    with pytest.raises(Disconnected) as info:
        retry(Flaky(10**6), what="claim a trial", outage=outage, sleep=clock.sleep,
              abort=lambda: clock.t >= 4.0)  # stops at once when told to
        retry(Flaky(10**6), what="claim a trial", outage=outage, sleep=clock.sleep)
    assert outage.down_since is not None
    assert 9.99 <= clock.t - outage.down_since <= 10.01  # the sleeps never go past the limit
    assert "claim a trial" in str(info.value) and "--max-disconnect 10s" in str(info.value)
    assert isinstance(info.value, StoreUnavailable)


def test_abort_returns_none_without_calling_again():
    clock = FakeClock()
    fn = Flaky(10**6)
    assert retry(fn, what="x", outage=Outage(60, clock=clock), sleep=clock.sleep, abort=lambda: fn.calls >= 3) is None
    assert fn.calls == 3


def test_outage_is_thread_safe_and_logs_once(caplog):
    outage = Outage(None)
    with caplog.at_level(logging.WARNING, logger="hpo_mongo.outage"):
        threads = [threading.Thread(target=outage.failed, args=(AutoReconnect("down"), "x"), kwargs={"since": 0.0})
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outage.recovered()
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
