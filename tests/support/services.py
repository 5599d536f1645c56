"""Drive a placement service without HTTP, and copy its state directory as a crash leaves it."""

from __future__ import annotations

import shutil

import numpy as np

from gpusched.serve import PlacementService


def stream(service: PlacementService, seed: int, count: int) -> None:
    """Random places and releases straight on the service (no HTTP)."""
    rng = np.random.default_rng(seed)
    live: list[str] = []
    for i in range(count):
        if live and rng.random() < 0.4:
            job_id = live.pop(int(rng.integers(len(live))))
            service.release({"job_id": job_id})
        else:
            gpus = int(rng.choice([1, 2, 4, 8, 16, 64]))
            body = {"job": {"id": f"j{seed}-{i}", "gpus": gpus,
                            "min_cap_w": int(rng.choice([300, 700]))}}
            reply, _ = service.place(body)
            if reply["placed"]:
                live.append(body["job"]["id"])
    service.journal.sync()


def crash_copy(service: PlacementService, tmp_path, name: str):
    """The state directory as a crash would leave it (no final snapshot)."""
    target = tmp_path / name
    shutil.copytree(service.state_dir, target, ignore=shutil.ignore_patterns("lock"))
    return target
