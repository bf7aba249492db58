"""``hyperopt.main``: hyperopt's old ``bin/`` entry point (``main(cmd)`` → ``<module>.main_<cmd>``).

hyperopt 0.3.0's own module fails to import (it needs ``base.SerialExperiment``, which is gone);
here it imports, ``main`` dispatches as it did, and ``main_search`` (the bandit experiments it
ran) says what to use instead: ``fmin`` in a script, ``hpo-mongo-worker`` and ``hpo-mongo``.
"""
from __future__ import annotations

import logging
import sys

from .utils import load_tokens

logger = logging.getLogger(__name__)

__all__ = ["main", "main_search"]


def main_search() -> int:
    raise NotImplementedError(
        "hyperopt's bandit experiments (main_search / SerialExperiment) are gone from hyperopt too: "
        "call hpo_mongo.fmin from a script; for distributed runs use MongoTrials, hpo-mongo-worker and hpo-mongo")


def main(cmd: str, fn_pos: int = 1) -> int:
    """Run ``<sys.argv[fn_pos]>.main_<search|dryrun|plot_history>(sys.argv[fn_pos + 1:])``."""
    runners = {"search": "main_search", "dryrun": "main_dryrun", "plot_history": "main_plot_history"}
    if cmd not in runners:
        logger.error("Command not recognized: %s (expected one of %s)", cmd, ", ".join(runners))
        sys.exit(1)
    if len(sys.argv) <= fn_pos:
        logger.error("Module name required")
        return 1
    fn = load_tokens(sys.argv[fn_pos].split(".") + [runners[cmd]])
    sys.exit(fn(sys.argv[fn_pos + 1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], 2))
