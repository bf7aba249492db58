"""``hyperopt.hp`` as a module: ``from hpo_mongo.hp import uniform`` (the DSL lives in hpo_mongo.space.hp)."""
from .space.hp import (__all__, choice, lognormal, loguniform, normal, pchoice,  # noqa: F401
                       qlognormal, qloguniform, qnormal, quniform, randint, uniform, uniformint)
