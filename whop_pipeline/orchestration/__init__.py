"""Orchestration: jobs, schedules, sensors, partitions, pool and tag names, in one place.

``partitions`` and ``tags`` are the vocabulary the systems' assets use and import nothing of them;
``jobs``, ``schedules``, ``sensors`` and ``definitions`` wire the systems together and sit above
them (the import contracts in pyproject.toml keep it so).
"""
