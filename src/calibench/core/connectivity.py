"""Online or offline: decided once per run, before any dataset is touched.

Offline when the user asks for it, when ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``
say so, or when the hub's host cannot be reached within a few seconds.  The
probe matters: ``datasets`` retries an unreachable hub for about 25 seconds
per dataset before giving up.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Connectivity:
    offline: bool
    reason: str  # why offline ("" when online)


def env_offline() -> str | None:
    for name in OFFLINE_ENV:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


@functools.lru_cache(maxsize=4)
def _probe(endpoint: str, timeout: float) -> str | None:
    """None when a TCP connection to the endpoint opens, else the reason it did not."""
    parsed = urlparse(endpoint)
    host = parsed.hostname
    if not host:
        return f"cannot parse hub endpoint {endpoint!r}"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"hub unreachable ({exc.strerror or type(exc).__name__})"


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def decide(offline: bool | None) -> Connectivity:
    """``offline=True`` forces offline, ``False`` forces online, ``None`` decides automatically."""
    if offline is True:
        return Connectivity(True, "offline on request (--offline)")
    if offline is False:
        return Connectivity(False, "")
    env = env_offline()
    if env:
        return Connectivity(True, f"{env} is set")
    reason = _probe(hub_endpoint(), PROBE_TIMEOUT_S)
    return Connectivity(reason is not None, reason or "")


def is_connection_error(exc: BaseException) -> bool:
    """Whether an exception from dataset loading means "the hub could not be reached"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, socket.gaierror, TimeoutError)):
            return True
        module = type(current).__module__
        name = type(current).__name__
        if module.startswith(("requests", "httpx", "urllib3", "huggingface_hub")) and (
            "Connect" in name or "Timeout" in name or "Offline" in name or "LocalEntryNotFound" in name
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
