"""`ogsync init`: a commented `ogsync.toml` with every setting at its default.

The text is written by hand, so that each setting is explained as a person needs it; a test
(tests/unit/test_settings_file.py) holds it to the code: every setting it shows is one the
code reads, with the default the code has, and every setting the code reads is shown.
"""

from __future__ import annotations

import os
from pathlib import Path

TEMPLATE = """\
# ogsync.toml: the settings of ogsync, written by `ogsync init`.
#
# Every setting is here, commented out at its default: uncomment a line to change it.
# Flags (such as --destination) beat environment variables (OGSYNC_...), which beat this file.
# ogsync reads ./ogsync.toml, or the file that --config or OGSYNC_CONFIG names. The settings
# may also sit under an [ogsync] table; then all of them must (merchants: [ogsync.merchants.X]).
#
# The API key is never written here. Export it before running ogsync:
#
#     export OGSYNC_API_KEY=...
#
# It is one of your store's Application API keys (Ordergroove Admin, rc3.ordergroove.com/keys/),
# and it must have the "Bulk Operations" permission, which lets it list across all customers.
# `ogsync check` tells you whether it does. To read it from a variable of another name, set
# api_key_env below. The webhook verification key (for `ogsync webhooks serve`) is exported the
# same way: OGSYNC_WEBHOOK_SECRET, or the variable webhook_secret_env names.

# -- The API ------------------------------------------------------------------------------

# Which Ordergroove API to sync from: "production" or "staging"
# (env OGSYNC_ENV, flag --env).
# env = "production"

# The API's address, instead of env: another host, a proxy, or the simulator
# (env OGSYNC_BASE_URL, flag --base-url).
# base_url = "https://restapi.ordergroove.com"

# The environment variable holding the API key, when it is not OGSYNC_API_KEY.
# api_key_env = "OGSYNC_API_KEY"

# The environment variable holding the webhook verification key, when it is not
# OGSYNC_WEBHOOK_SECRET (two keys, comma-separated, while Ordergroove rotates them).
# webhook_secret_env = "OGSYNC_WEBHOOK_SECRET"

# The zone the API writes its timestamps in and reads its date filters in
# (env OGSYNC_API_TIMEZONE). Stored timestamps are converted to UTC.
# api_timezone = "America/Chicago"

# -- The warehouse ------------------------------------------------------------------------

# Where the data goes (env OGSYNC_DESTINATION, flag --destination): a DuckDB file,
# duckdb:///FILE (relative) or duckdb:////absolute/FILE, or PostgreSQL,
# postgresql://USER:PASSWORD@HOST:PORT/DB (needs: pip install 'ogsync[postgres]'), or
# Snowflake, snowflake://USER@ACCOUNT/DATABASE?warehouse=W&role=R (needs: pip install
# 'ogsync[snowflake]'), whose secret is never in the URL: a private key file,
# OGSYNC_SNOWFLAKE_PRIVATE_KEY_FILE (and OGSYNC_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE if it is
# encrypted), or a password, OGSYNC_SNOWFLAKE_PASSWORD; or Delta Lake or Iceberg tables,
# delta:///ABSOLUTE/FOLDER, delta+s3://BUCKET/PREFIX, iceberg:///ABSOLUTE/FOLDER or
# iceberg+s3://BUCKET/PREFIX (needs: pip install 'ogsync[delta]' or 'ogsync[iceberg]'), S3
# credentials from the AWS variables, and for iceberg+s3 the catalog's URL (sqlite:////FILE
# or postgresql://...) in OGSYNC_ICEBERG_CATALOG.
# destination = "duckdb:///ogsync.duckdb"

# The schema the tables go in (env OGSYNC_SCHEMA, flag --schema).
# schema = "ordergroove"

# DuckDB's own memory: its cache and key indexes. Raised by itself when a large
# warehouse's key indexes need more.
# duckdb_memory_limit = "80MB"

# Records written to the warehouse in one transaction, with their checkpoint.
# batch_records = 5000

# -- How a sync runs ----------------------------------------------------------------------

# Each incremental fetch starts this long before the last watermark, so records stamped
# around a run's start, or read by the API in another zone, are never missed.
# overlap_minutes = 60

# Most endpoints fetched at once (1 to 5, Ordergroove's limit). A run starts with one and
# adds more only while the API keeps them waiting (flag --workers).
# workers = 5

# Requests a minute, across all workers; the API allows 6,000.
# requests_per_minute = 5000

# How long one request may take.
# timeout_seconds = 60

# Tries per request before the endpoint fails (429, 423, 5xx, timeouts and dropped
# connections are retried with backoff).
# max_attempts = 8

# How far the API's clock may be from this machine's before a run distrusts it,
# and what it then does: "fail" (exit 1) or "local" (run on this machine's clock)
# (env OGSYNC_CLOCK_TOLERANCE_MINUTES, OGSYNC_ON_CLOCK_SKEW).
# clock_tolerance_minutes = 5
# on_clock_skew = "fail"

# -- Safety bounds against a broken API ---------------------------------------------------

# The largest page body read (decompressed, in bytes); 64 MiB.
# max_page_bytes = 67108864

# The largest record kept (bytes); a larger one is set aside in _ogsync_rejected. 4 MiB.
# max_record_bytes = 4194304

# The most pages one listing may take before it is stopped as endless.
# max_pages = 1000000

# Plain http sends the key in clear, so it is refused except to this machine; set this
# only on a network you own (env OGSYNC_ALLOW_INSECURE_HTTP).
# allow_insecure_http = false

# -- Schedule: `ogsync schedule` and the Airflow DAGs -------------------------------------

# When to sync: a cron expression (minute hour day-of-month month day-of-week).
# Ordergroove suggests once a day between 12:00 and 20:00 Chicago time.
# schedule = "0 13 * * *"

# The zone the schedule is read in.
# schedule_timezone = "America/Chicago"

# -- Webhooks -----------------------------------------------------------------------------
# Not set in this file: the verification key (OGSYNC_WEBHOOK_SECRET, above), and the
# receiver's inbox, OGSYNC_WEBHOOK_INBOX or --inbox (default: the warehouse when it is
# PostgreSQL, else ogsync-inbox.sqlite in the current folder).

# -- History and personal data -----------------------------------------------------------

# Endpoints whose every version is kept in <table>_history, to ask what was true on a date:
# "default" (subscriptions, customers, addresses, orders and items), "all", "none", or names
# such as "subscriptions,orders" (env OGSYNC_HISTORY).
# history = "default"

# The environment variable holding the key hashed fields are hashed with (HMAC-SHA-256),
# needed once a field is hashed. The key itself is never written here.
# hash_key_env = "OGSYNC_HASH_KEY"

# Per endpoint, fields kept out of the warehouse (exclude: no column, gone from _raw) or
# stored hashed (hash). After changing them, `ogsync rewrite` brings the warehouse in line.
#
# [endpoints.customers]
# exclude = ["phone_number"]
# hash = ["email"]

# -- Several merchants --------------------------------------------------------------------
# A merchant group or a brand with several stores lists each in a table of its own.
# `ogsync sync` then syncs each in turn into its own schema; `--merchant NAME` syncs one.
# A merchant's table may set only these; every other setting above is shared by all.
#
# [merchants.brand-us]
# api_key_env = "OG_KEY_US"              # required: the variable holding its API key
# webhook_secret_env = "OG_WEBHOOK_US"   # the variable holding its webhook key
# env = "production"
# base_url = "https://restapi.ordergroove.com"
# destination = "duckdb:///ogsync.duckdb"
# schema = "og_us"                      # give each merchant its own
# api_timezone = "America/Chicago"
"""


def write_settings_file(path: Path, *, force: bool = False) -> None:
    """Write the template to `path`; an existing file is kept unless `force`."""
    if path.exists() and not force:
        raise FileExistsError(path)
    # Exclusive creation when not forced, so a file appearing meanwhile is not overwritten.
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    with os.fdopen(os.open(path, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(TEMPLATE)
