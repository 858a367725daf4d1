"""botocore S3 clients that share one loader of botocore's service and endpoint models.

Each botocore session reads those models from disk and parses them again (megabytes of
JSON), which costs far more CPU than the few requests a client then makes. The loader caches
what it has read, so sharing it makes every client after the first cheap. Each call still
gets a session of its own: a botocore session is not safe to share between threads, while
its clients are.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _loader() -> Any:
    from botocore.loaders import create_loader

    return create_loader()


def s3_client(**options: Any) -> Any:
    """A new S3 client; `options` are botocore's `create_client` arguments (region_name,
    endpoint_url, keys, config). Unset ones come from the environment, as for any client."""
    from botocore.session import get_session

    session = get_session()
    session.register_component("data_loader", _loader())
    return session.create_client("s3", **options)
