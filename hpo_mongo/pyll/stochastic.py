"""``hyperopt.pyll.stochastic.sample``: draw one random point of a space."""
from ..space.evaluate import sample

__all__ = ["sample"]
