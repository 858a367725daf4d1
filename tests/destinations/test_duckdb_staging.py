"""DuckDB takes a staged batch's `_raw` as JSON already, and stores its text as typed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson

from ogsync.destinations.duckdb import DuckDBDestination, file_url
from ogsync.endpoints import BY_NAME

from .test_contract import batch, commit, rec

ORDERS = replace(BY_NAME["orders"], history=True)


def test_raw_is_staged_as_json_and_stored_as_typed_with_its_hash(tmp_path: Path):
    dest = DuckDBDestination(file_url(tmp_path / "w.duckdb"), "og")
    dest.prepare([ORDERS])
    records = [
        rec(ORDERS, "plain", "2025-01-15 10:00:00", total="12.50"),
        rec(ORDERS, "escapes", "2025-01-15 10:00:00",
            rejected_message='quote " slash \\ tab \t line\u2028sep nul \x00 😀 é',
            extra_data=orjson.dumps({"nested": [1, 2.5, None, {"deep": True}]}).decode()),
        rec(ORDERS, "numbers", "2025-01-15 10:00:00", tries=2**62, surprise=[1e300, -0.0, 1e-7]),
    ]  # fmt: skip
    staged = batch(ORDERS, records)
    typed = {
        row["public_id"]: row["_raw"] for row in staged.select(["public_id", "_raw"]).to_pylist()
    }

    with dest.stage("ogsync_probe", staged) as name:
        kinds = dict(dest.execute(f"SELECT column_name, column_type FROM (DESCRIBE {name})"))
    assert kinds["_raw"] == "JSON"  # else every statement casts it, parsing each record

    (result,) = dest.write([(ORDERS, staged, commit(ORDERS))])
    assert result.written == 3
    for table in ("orders", "orders_history"):
        stored = dict(dest.execute(f"SELECT public_id, CAST(_raw AS VARCHAR) FROM og.{table}"))
        assert stored == typed, table  # byte for byte, as records.py wrote it
    hashes = dict(dest.execute("SELECT public_id, _version_hash FROM og.orders_history"))
    assert hashes == {
        key: dest.execute("SELECT md5(?)", [text])[0][0] for key, text in typed.items()
    }
    dest.close()
