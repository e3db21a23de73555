"""Benchmarks: scripts that print figures as ratios or tables measured in the same run.

Run each as a module from the project root, e.g. ``.venv/bin/python -m benchmarks.ranking_quality``.
They import :mod:`ml_core` for the computations and :mod:`pipelines` to run the graph or read a
materialized store (:mod:`pipelines.readers`); never the asset modules.
"""
