"""S3 clients share botocore's loader of service models, and nothing else."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ogsync.destinations.s3_client import s3_client


def test_clients_share_one_loader_but_keep_their_own_endpoint_region_and_keys(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    local = s3_client(
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="AKIDLOCAL",
        aws_secret_access_key="local-secret",
    )
    with ThreadPoolExecutor(1) as other_thread:  # a client made on another thread
        remote = other_thread.submit(
            s3_client,
            region_name="eu-west-1",
            aws_access_key_id="AKIDREMOTE",
            aws_secret_access_key="remote-secret",
        ).result()
    assert local._loader is remote._loader
    assert local.meta.endpoint_url == "http://127.0.0.1:9"
    assert remote.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert local.meta.region_name == "us-east-1"
    assert remote.meta.region_name == "eu-west-1"
    local_keys = local._request_signer._credentials.get_frozen_credentials()
    remote_keys = remote._request_signer._credentials.get_frozen_credentials()
    assert (local_keys.access_key, remote_keys.access_key) == ("AKIDLOCAL", "AKIDREMOTE")
