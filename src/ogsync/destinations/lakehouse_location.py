"""Where a lakehouse warehouse is: a folder on this machine (`delta:///abs/path`) or a prefix
in an S3 bucket (`delta+s3://bucket/prefix`), credentials from the standard AWS environment
variables and never from the URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ogsync.destinations.errors import DestinationError

# The AWS variables the S3 client reads, as the formats' own S3 clients name their settings.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
)


@dataclass(frozen=True)
class Location:
    root: str  # an absolute folder, or s3://bucket/prefix
    on_s3: bool
    options: dict[str, list[str]]  # the URL's query parameters

    def of(self, *parts: str) -> str:
        """A path under the root."""
        return "/".join([self.root.rstrip("/"), *parts])

    def option(self, name: str) -> str | None:
        values = self.options.get(name)
        return values[-1] if values else None


def parse(url: str, kind: str, scheme: str) -> Location:
    """`scheme:///abs/path` or `scheme+s3://bucket/prefix`; anything else is refused by name."""
    usage = f"{kind} destination: {scheme}:///ABSOLUTE/FOLDER or {scheme}+s3://BUCKET/PREFIX"
    parts = urlsplit(url)
    options = parse_qs(parts.query)
    if parts.username or parts.password:
        raise DestinationError(
            f"bad {usage}: credentials don't go in the URL; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment"
        )
    if parts.scheme == scheme:
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise DestinationError(f"bad {usage} (got {masked(url)})")
        return Location(parts.path.rstrip("/"), False, options)
    if parts.scheme == f"{scheme}+s3":
        if not parts.netloc:
            raise DestinationError(f"bad {usage}: no bucket (got {masked(url)})")
        prefix = parts.path.strip("/")
        root = f"s3://{parts.netloc}" + (f"/{prefix}" if prefix else "")
        return Location(root, True, options)
    raise DestinationError(f"bad {usage} (got {masked(url)})")


def masked(url: str) -> str:
    """The URL as messages show it: no user, password or query values."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    query = "&".join(f"{name}=***" for name in parse_qs(parts.query))
    return f"{parts.scheme}://{host}{parts.path}" + (f"?{query}" if query else "")


def local_path(url: str, scheme: str) -> Path | None:
    parts = urlsplit(url)
    return Path(parts.path) if parts.scheme == scheme else None


def aws_environment() -> dict[str, str]:
    """The AWS variables that are set, for a client that takes them as options."""
    found = {name: os.environ[name] for name in AWS_VARIABLES if os.environ.get(name)}
    endpoint = found.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        found.setdefault("AWS_ALLOW_HTTP", "true")  # an S3-compatible store on plain HTTP
    if "AWS_REGION" not in found and "AWS_DEFAULT_REGION" in found:
        found["AWS_REGION"] = found["AWS_DEFAULT_REGION"]
    return found
