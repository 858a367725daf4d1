"""Whether a base URL would carry the API key in clear to another machine.

Standard library only: settings are checked where the HTTP client is not loaded (an Airflow
DAG processor parses settings files).
"""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_reason(base_url: str) -> str | None:
    """Why `base_url` would send the key in clear to another machine, or None if it won't."""
    parsed = urlsplit(base_url)
    if parsed.scheme == "http" and not is_loopback(parsed.hostname or ""):
        return (
            f"base URL http://{parsed.hostname}:{parsed.port or 80} is plain http: the API key "
            "would travel in clear; use https, or set allow_insecure_http "
            "(OGSYNC_ALLOW_INSECURE_HTTP=1) if this network is yours"
        )
    return None
