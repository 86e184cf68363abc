"""Stockade on a Ray cluster (the `stockade[ray]` extra): `RaySandbox`, a sandbox actor with
a warm pool on every node. See docs/scaling.md."""

from stockade.ray.cluster import RaySandbox, RaySession, RayWorkspace

__all__ = ["RaySandbox", "RaySession", "RayWorkspace"]
