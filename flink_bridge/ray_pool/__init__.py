"""Ray worker pools and the synchronous bridge the Flink operator uses to reach them.

This is the only package that imports ray (lazily, inside functions); `actors` never does.
"""

from __future__ import annotations

from flink_bridge.ray_pool._bridge import BridgeState, RayBridge
from flink_bridge.ray_pool._config import BridgeConfig, PoolConfig
from flink_bridge.ray_pool._connect import connect_ray, real_std_streams, release_ray
from flink_bridge.ray_pool._pool import WorkerPool
from flink_bridge.ray_pool._worker import EffectWorker, ExecutorFactory

__all__ = [
    "BridgeConfig",
    "BridgeState",
    "EffectWorker",
    "ExecutorFactory",
    "PoolConfig",
    "RayBridge",
    "WorkerPool",
    "connect_ray",
    "real_std_streams",
    "release_ray",
]
