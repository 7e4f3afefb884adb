"""Online or offline: decided once per run, before any dataset is touched.

Offline when the user asks for it, when ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``
say so, or when the hub's host cannot be reached within a few seconds.  The
probe matters: ``datasets`` retries an unreachable hub for about 25 seconds
per dataset before giving up, and the hub client as long per model file.

The probe's target and timeout are ``$CALIBENCH_HUB_PROBE`` (a URL or
``host:port``; default the hub endpoint) and ``$CALIBENCH_HUB_PROBE_TIMEOUT``
(seconds, default 3), so a test can point it at a closed local port.  Code
that is about to read the hub calls :func:`hub_access`: when offline it puts
the hub and ``datasets`` clients in their offline mode (cache only, no
retries), so a missing file fails at once and one line can say why.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
PROBE_TIMEOUT_S = 3.0
PROBE_ENV = "CALIBENCH_HUB_PROBE"  # what to probe instead of the hub endpoint (URL or host:port)
PROBE_TIMEOUT_ENV = "CALIBENCH_HUB_PROBE_TIMEOUT"  # seconds


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
    parsed = urlparse(endpoint if "://" in endpoint else f"tcp://{endpoint}")
    host = parsed.hostname
    if not host:
        return f"cannot parse hub endpoint {endpoint!r}"
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return f"cannot parse hub endpoint {endpoint!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"hub unreachable ({exc.strerror or type(exc).__name__})"


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def probe_target() -> tuple[str, float]:
    """What the probe connects to and how long it waits: ``$CALIBENCH_HUB_PROBE[_TIMEOUT]`` or the hub, 3 s."""
    target = os.environ.get(PROBE_ENV, "").strip() or hub_endpoint()
    raw = os.environ.get(PROBE_TIMEOUT_ENV, "").strip()
    try:
        timeout = float(raw) if raw else PROBE_TIMEOUT_S
    except ValueError:
        timeout = PROBE_TIMEOUT_S
    return target, timeout if timeout > 0 else PROBE_TIMEOUT_S


def decide(offline: bool | None) -> Connectivity:
    """``offline=True`` forces offline, ``False`` forces online, ``None`` decides automatically."""
    if offline is True:
        return Connectivity(True, "offline on request (--offline)")
    if offline is False:
        return Connectivity(False, "")
    env = env_offline()
    if env:
        return Connectivity(True, f"{env} is set")
    reason = _probe(*probe_target())
    return Connectivity(reason is not None, reason or "")


def go_offline() -> None:
    """Put the hub and ``datasets`` clients in offline mode for this process: cache only, no retries.

    Both read ``HF_HUB_OFFLINE`` once, at import (``datasets`` copies the hub
    client's constant then); their module constants are what later calls consult.
    """
    import sys

    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]


def hub_access() -> Connectivity:
    """Whether the hub can be read now (decided once per process); offline, the clients go offline too."""
    state = decide(None)
    if state.offline:
        go_offline()
    return state


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
