"""Reaching Ray for ``ray_builder``: is it installed, is the cluster at an address answering, and starting or
joining it with this checkout on the workers' path and Ray's own chatter turned down."""
from __future__ import annotations

import importlib
import logging
import os
import socket
from pathlib import Path

from ..errors import ClusterProblem

REPO = Path(__file__).resolve().parents[2]


def ray_available() -> bool:
    try:
        importlib.import_module("ray.data")
    except ImportError:
        return False
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody answers at (ray.init would retry it for minutes); `auto` is not checked."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterProblem(f"no Ray cluster answers at {address} ({e.strerror or e}); start one there with "
                             "`ray start --head --port=6379`, or check --address") from None


def start_ray(address: str | None, cpus: int | None):
    """Join the cluster at `address`, or start a local Ray with `cpus` CPUs (default: all of them)."""
    import ray

    if address:
        check_reachable(address)

    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    kw = dict(logging_level=logging.WARNING, log_to_driver=False, runtime_env={"env_vars": env})
    # Ray warns that a new local cluster uses its default, token authentication: that is what we want
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=512 * 2**20, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        hint = ("; a cluster started by `ray start` wants its token: set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN=<`ray get-auth-token` on the head>" if address and "RAY_AUTH_MODE" not in os.environ else "")
        raise ClusterProblem(f"cannot start or join {where} ({str(e).splitlines()[0] if str(e) else type(e).__name__}){hint}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ray.util.debug.log_once("ray_data_progress_manager_disabled")  # we asked for it: no warning that we did
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per finished job
    return ray
