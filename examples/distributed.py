"""Distributed example: a driver that queues trials in MongoDB for ``hpo-mongo-worker`` processes.

Start MongoDB and one or more workers, then run this script (the order does not matter: workers
wait for trials, the driver waits for workers)::

    export HPO_MONGO_URL=mongodb://localhost:27017/hpo
    export HPO_MONGO_SECRET=$(openssl rand -hex 32)   # optional; the SAME value on every worker
    hpo-mongo-worker &                                # as many as you like, on any machine
    python examples/distributed.py

Environment (all optional except the URL):

``HPO_MONGO_URL``     where the trials live (read by MongoTrials and by every worker)
``HPO_MONGO_SECRET``  signs the pickled objective; workers refuse unsigned/tampered payloads
``HPO_EXP_KEY``       experiment name (default ``branin-demo``); rerunning with the same key resumes
``HPO_MAX_EVALS``     number of trials (default 100)
``HPO_MAX_QUEUE_LEN`` trials kept queued for the workers (default 8)
``HPO_NOISE``         standard deviation of the noise added to the loss (default 0.1)
``HPO_TRIAL_SLEEP``   seconds each trial sleeps, standing in for an expensive training run (default
                      0.5, so that a handful of workers visibly share the work; 0 measures the
                      pure overhead, as a throughput test would)

The objective is defined in ``__main__``, so cloudpickle ships it *by value*: workers need
hpo_mongo and numpy, not this file. Everything it uses is imported inside the function.
"""
from __future__ import annotations

import os
import sys


def noisy_branin(params: dict) -> dict:
    """Branin-Hoo (global minimum 0.397887 at three points) plus Gaussian noise."""
    import math
    import time

    import numpy as np

    x, y = float(params["x"]), float(params["y"])
    a, b, c = 1.0, 5.1 / (4 * math.pi ** 2), 5.0 / math.pi
    r, s, t = 6.0, 10.0, 1.0 / (8 * math.pi)
    value = a * (y - b * x ** 2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s
    noise = float(params.get("noise", 0.0))
    rng = np.random.default_rng()
    time.sleep(float(params.get("sleep", 0.0)))  # pretend this is an expensive training run
    return {"status": "ok", "loss": value + (rng.normal(0.0, noise) if noise > 0 else 0.0),
            "true_loss": value}


def main() -> int:
    url = os.environ.get("HPO_MONGO_URL")
    if not url:
        print("set HPO_MONGO_URL (e.g. mongodb://localhost:27017/hpo)", file=sys.stderr)
        return 2
    from hpo_mongo import MongoTrials, STATUS_OK, fmin, hp

    exp_key = os.environ.get("HPO_EXP_KEY", "branin-demo")
    max_evals = int(os.environ.get("HPO_MAX_EVALS", "100"))
    queue_len = int(os.environ.get("HPO_MAX_QUEUE_LEN", "8"))
    space = {
        "x": hp.uniform("x", -5.0, 10.0),
        "y": hp.uniform("y", 0.0, 15.0),
        "noise": float(os.environ.get("HPO_NOISE", "0.1")),
        "sleep": float(os.environ.get("HPO_TRIAL_SLEEP", "0.5")),
    }
    trials = MongoTrials(url, exp_key=exp_key)
    best = fmin(noisy_branin, space, max_evals=max_evals, trials=trials,
                max_queue_len=queue_len, show_progressbar=False)
    ok = [t["result"]["loss"] for t in trials.trials if t["result"].get("status") == STATUS_OK]
    if not ok:
        print(f"experiment {exp_key!r}: no successful trial", file=sys.stderr)
        return 1
    print(f"experiment {exp_key!r}: {len(ok)} ok trials, best point {best}, "
          f"best loss {min(ok):.4f} (noise-free minimum 0.3979)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
