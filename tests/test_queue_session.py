"""Two drivers sharing one experiment on an in-memory queue: ``max_evals`` holds when both store a
batch at once (the real-server, two-process version is in test_driver_recovery, marked slow)."""
from __future__ import annotations

import logging

from hpo_mongo import hp
from hpo_mongo.domain import Domain
from hpo_mongo.trials.documents import new_trial_doc
from hpo_mongo.trials.memory_queue import MemoryJobQueue
from hpo_mongo.trials.queued import QueueTrials
from hpo_mongo.trials.session import Run

SPACE = {"x": hp.uniform("x", 0, 10)}


def driver(queue, max_evals):
    trials = QueueTrials(queue, "e", refresh=False)
    session = trials.open_session(Run(domain=Domain(lambda p: p["x"], SPACE), max_evals=max_evals))
    return trials, session


def store_batch(trials, n):
    """What fmin does with one batch of suggestions: tids in one block, staged, stored in one write."""
    tids = trials.new_trial_ids(n)
    trials.stage([new_trial_doc(t, {"x": [float(t)]}, exp_key="e") for t in tids])
    trials.flush_staged()
    return tids


def test_batches_stored_at_once_by_two_drivers_keep_max_evals(caplog):
    q = MemoryJobQueue()
    a, sa = driver(q, 4)
    b, sb = driver(q, 4)
    assert sa.room() == sb.room() == 4  # neither has seen the other's batch yet
    assert store_batch(a, 4) == [0, 1, 2, 3]
    assert store_batch(b, 4) == [4, 5, 6, 7]
    assert q.count("e") == 8
    sa.after_batch()  # a's trials rank first: it keeps them all
    assert q.count("e") == 8 and [d["tid"] for d in a.trials] == list(range(8))
    with caplog.at_level(logging.INFO, logger="hpo_mongo"):
        sb.after_batch()
    assert sorted(d["tid"] for d in q.find("e")) == [0, 1, 2, 3]
    assert [d["tid"] for d in b.trials] == [0, 1, 2, 3] and sb.room() == 0
    assert "4 queued trial(s) of this driver past max_evals=4 withdrawn" in caplog.text
    # a saw b's batch; finding it gone is no reset of the store (b withdrew it): no warning, no repair
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpo_mongo"):
        sa.check_store()
    assert caplog.text == ""
    assert [d["tid"] for d in a.trials] == [0, 1, 2, 3] and sa.room() == 0


def test_the_heartbeat_check_withdraws_what_an_earlier_count_missed():
    """b counted before a's batch landed; a's tids rank first, so b withdraws its own at its next check."""
    q = MemoryJobQueue()
    a, sa = driver(q, 3)
    b, sb = driver(q, 3)
    a_tids = a.new_trial_ids(2)  # a takes its tids first but stores after b
    store_batch(b, 3)
    sb.after_batch()
    assert q.count("e") == 3
    a.stage([new_trial_doc(t, {"x": [0.0]}, exp_key="e") for t in a_tids])
    a.flush_staged()
    sa.after_batch()  # a's tids 0, 1 rank first: a keeps them
    assert q.count("e") == 5
    claimed = q.claim("w:1", worker={"host": "w", "pid": 1}, lease_timeout=30, max_attempts=3)
    assert claimed["tid"] == 0
    sb.check_store()  # b's tids 2, 3, 4: the last two are past max_evals=3
    assert sorted(d["tid"] for d in q.find("e")) == [0, 1, 2]


def test_the_queue_deepens_while_workers_finish_trials_faster_than_the_driver_loops():
    """One NEW trial per live worker, plus as many as they finish per driver loop (at most one
    more per worker); back to one per worker when trials finish slower than the loop."""
    from hpo_mongo.trials.documents import JOB_STATE_DONE
    q = MemoryJobQueue()
    t, s = driver(q, 1000)
    s.live_workers = 4
    assert s.queue_target(1) == 4
    targets = []
    for _ in range(4):  # the 4 workers finish 4 trials during each loop
        store_batch(t, 4)
        for _ in range(4):
            job = q.claim("w:1", worker={"host": "w", "pid": 1}, lease_timeout=30, max_attempts=3)
            assert q.finish(job, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})
        t.refresh()
        targets.append(s.queue_target(1))
    assert targets == [6, 7, 7, 7]  # the smoothed rate: 2, 3, 3.5, 3.75 per loop
    for _ in range(4):  # nothing finishes
        t.refresh()
        targets.append(s.queue_target(1))
    assert targets[-1] == 4 and targets[4:] == sorted(targets[4:], reverse=True)


class _Stream:
    """A change stream that yields one change after ``quiet`` empty polls, or breaks."""

    def __init__(self, quiet: int, breaks: bool = False):
        self.quiet, self.breaks, self.polls, self.closed = quiet, breaks, 0, False

    def try_next(self):
        from pymongo.errors import AutoReconnect
        self.polls += 1
        if self.breaks:
            raise AutoReconnect("failover")
        return {"operationType": "update"} if self.polls > self.quiet else None

    def close(self):
        self.closed = True


class _Jobs:
    def __init__(self, streams):
        self.streams, self.opened = list(streams), 0

    def watch(self, **kwargs):
        from pymongo.errors import OperationFailure
        self.opened += 1
        if not self.streams:
            raise OperationFailure("The $changeStream stage is only supported on replica sets", code=40573)
        return self.streams.pop(0)


def test_the_driver_wait_returns_at_a_change_with_change_streams_and_sleeps_without():
    """MongoJobQueue.wait_for_changes: woken by the stream's next change; a broken stream is closed
    and reopened at the next wait; a server refusing change streams is asked once, then it sleeps."""
    import time

    import mongomock

    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    q = MongoJobQueue(mongomock.MongoClient()["db"])
    first, broken, third = _Stream(quiet=2), _Stream(quiet=0, breaks=True), _Stream(quiet=0)
    q.jobs = _Jobs([first, broken, third])
    t0 = time.monotonic()
    q.wait_for_changes("e", 30.0)
    assert time.monotonic() - t0 < 5.0 and first.polls == 3  # returned at the change, long before 30 s
    q._stream = None  # the next wait opens the next stream, which breaks: it sleeps out the wait
    t0 = time.monotonic()
    q.wait_for_changes("e", 0.3)
    assert broken.closed and 0.25 <= time.monotonic() - t0 < 5.0
    q.wait_for_changes("e", 0.3)  # reopened: the third stream has a change at once
    assert third.polls == 1 and q.jobs.opened == 3
    q._stream = None
    t0 = time.monotonic()
    q.wait_for_changes("e", 0.3)  # change streams refused: a plain sleep, and never asked again
    q.wait_for_changes("e", 0.3)
    assert q.jobs.opened == 4 and time.monotonic() - t0 >= 0.5


def test_the_housekeeping_tick_backs_off_while_nothing_changes(monkeypatch):
    """Once a second while the view changes or trials wait for a worker; doubling up to
    DRIVER_TICK_IDLE_MAX while nothing happens (a driver waiting on long trials)."""
    from hpo_mongo.trials import queued
    clock = [100.0]
    monkeypatch.setattr(queued.time, "monotonic", lambda: clock[0])
    q = MemoryJobQueue()
    beats: list[float] = []
    beat_driver = q.beat_driver
    monkeypatch.setattr(q, "beat_driver", lambda exp_key: beats.append(clock[0]) or beat_driver(exp_key))
    trials, session = driver(q, 10)

    def run_for(seconds):
        del beats[:]
        for _ in range(int(seconds * 4)):
            clock[0] += 0.25
            trials.refresh()
            session.tick()
        return [round(b - a, 1) for a, b in zip(beats, beats[1:], strict=False)]
    assert run_for(20) == [1.0, 2.0, 4.0, 5.0, 5.0]  # idle: 1 s, 2 s, 4 s, then every 5 s
    store_batch(trials, 2)  # queued, and no worker: a tick each second until the driver has said so
    gaps = run_for(12)
    assert gaps[:4] == [1.0] * 4 and gaps[-1] > 1.0, gaps
    assert q.claim("w", exp_key="e", lease_timeout=30.0, max_attempts=3) is not None
    assert run_for(8)[:2] == [1.0, 2.0]  # the claim is a change: a second, then backing off again
