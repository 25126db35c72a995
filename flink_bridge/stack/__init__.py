"""The embedded local stack: a Kafka broker, a Ray head and (optionally) a Flink cluster.

Everything binds to 127.0.0.1. `flink-actors up/down/status` drive it; tests use the same
functions through the fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations
