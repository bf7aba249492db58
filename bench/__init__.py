"""Benchmarks of hpo_mongo's search algorithms against hyperopt and Optuna (see README.md)."""
