"""Reaching Snowflake: the URL, the secrets (from the environment, never the URL), sessions,
and which errors mean the session is gone.

    snowflake://USER@ACCOUNT/DATABASE?warehouse=W&role=R

The schema comes from the schema setting. The secret is a password in
`OGSYNC_SNOWFLAKE_PASSWORD`, or a private key (key-pair authentication, what Snowflake
recommends for service users) in the PEM file `OGSYNC_SNOWFLAKE_PRIVATE_KEY_FILE`, encrypted
with `OGSYNC_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE` if it is. Options `host`, `port` and `protocol`
reach a server that is not at the account's usual address (the emulator the tests run).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

# The driver is the `snowflake` extra: without it, this import fails and the registry says
# which extra to install (WarehouseKind.extra).
import snowflake.connector
from snowflake.connector import errors as sf_errors

from ogsync.destinations.errors import DestinationError

PASSWORD_ENV = "OGSYNC_SNOWFLAKE_PASSWORD"
KEY_FILE_ENV = "OGSYNC_SNOWFLAKE_PRIVATE_KEY_FILE"
PASSPHRASE_ENV = "OGSYNC_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
EXAMPLE = "snowflake://USER@ACCOUNT/DATABASE?warehouse=W&role=R"

STAGINGS = ("temporary", "transient")
OPTIONS = (
    "warehouse",
    "role",
    "host",
    "port",
    "protocol",
    "login_timeout",
    "network_timeout",
    "staging",
    "lease_seconds",
)
# Query parameters that would put a secret in the URL, where logs and shells keep it.
SECRET_OPTIONS = frozenset(
    {"password", "passcode", "token", "private_key", "private_key_file", "private_key_file_pwd"}
)
DEFAULT_LEASE_SECONDS = 120

# Every session reads and writes in UTC (the Parquet timestamps load into TIMESTAMP_TZ through
# it), and quoted identifiers resolve in upper case: the statements quote the API's lower-case
# names, and the tables come out as ORDERS with PUBLIC_ID, which analysts query unquoted.
SESSION_PARAMETERS = {"TIMEZONE": "UTC", "QUOTED_IDENTIFIERS_IGNORE_CASE": True}

# The connector logs every request and statement at INFO and DEBUG. Statements hold no secret
# (values are bound), but a log line is no place to find out: only its warnings and errors show,
# unless whoever runs ogsync set the connector's level on purpose.
_connector_log = logging.getLogger("snowflake.connector")
if _connector_log.level == logging.NOTSET:
    _connector_log.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Target:
    """Where a snowflake:// URL points."""

    user: str
    account: str
    database: str
    warehouse: str | None = None
    role: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    login_timeout: int | None = None
    network_timeout: int | None = None
    staging: str = "temporary"  # "transient": what the emulator can load (README)
    lease_seconds: int = DEFAULT_LEASE_SECONDS


def _number(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise DestinationError(
            f"bad Snowflake option {name}={value!r}: a whole number {low}-{high}"
        )
    return number


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    netloc = parts.netloc
    user, at, account = netloc.rpartition("@")
    if ":" in user:
        raise DestinationError(
            f"no password in a Snowflake URL ({masked(url)}): set {PASSWORD_ENV}, or "
            f"{KEY_FILE_ENV} for key-pair authentication"
        )
    database = unquote(parts.path.strip("/"))
    if not at or not user or not account or not database or "/" in database:
        raise DestinationError(f"bad Snowflake destination {masked(url)}: expected {EXAMPLE}")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        key = name.lower()
        if key in SECRET_OPTIONS:
            raise DestinationError(
                f"no secrets in a Snowflake URL ({key}=...): set {PASSWORD_ENV}, or "
                f"{KEY_FILE_ENV} (and {PASSPHRASE_ENV}) for key-pair authentication"
            )
        if key not in OPTIONS:
            raise DestinationError(
                f"unknown Snowflake option {name!r}: use {', '.join(OPTIONS)} ({EXAMPLE})"
            )
        options[key] = value
    staging = options.get("staging", "temporary")
    if staging not in STAGINGS:
        raise DestinationError(f"bad Snowflake option staging={staging!r}: use temporary")
    protocol = options.get("protocol")
    if protocol is not None and protocol not in ("https", "http"):
        raise DestinationError(f"bad Snowflake option protocol={protocol!r}: use https or http")
    return Target(
        user=unquote(user),
        account=unquote(account),
        database=database,
        warehouse=options.get("warehouse") or None,
        role=options.get("role") or None,
        host=options.get("host") or None,
        port=_number("port", options["port"], 1, 65535) if "port" in options else None,
        protocol=protocol,
        login_timeout=_number("login_timeout", options["login_timeout"], 1, 3600)
        if "login_timeout" in options
        else None,
        network_timeout=_number("network_timeout", options["network_timeout"], 1, 86400)
        if "network_timeout" in options
        else None,
        staging=staging,
        lease_seconds=_number("lease_seconds", options["lease_seconds"], 2, 86400)
        if "lease_seconds" in options
        else DEFAULT_LEASE_SECONDS,
    )


def masked(url: str) -> str:
    """The URL as messages may show it: a password someone put in it anyway is hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "snowflake://***"
    user, at, account = parts.netloc.rpartition("@")
    if ":" in user:
        user = user.split(":", 1)[0] + ":***"
    query = "&".join(
        f"{quote(k, safe='')}={'***' if k.lower() in SECRET_OPTIONS else quote(v, safe='')}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    shown = f"{parts.scheme}://{user}{at}{account}{parts.path}"
    return f"{shown}?{query}" if query else shown


@dataclass
class Credentials:
    """The connector's authentication arguments, and the secrets no message may show."""

    arguments: dict[str, Any]
    secrets: tuple[str, ...] = field(default=())

    def hide(self, message: object) -> str:
        """The first line of `message`, every secret in it replaced."""
        text = str(message).strip()
        text = text.splitlines()[0] if text else ""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def credentials(environ: dict[str, str] | None = None) -> Credentials:
    """The secret the environment holds: a password, or a private key file (and passphrase)."""
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV) or ""
    key_file = env.get(KEY_FILE_ENV) or ""
    passphrase = env.get(PASSPHRASE_ENV) or ""
    secrets = tuple(s for s in (password, passphrase) if s)
    if password and key_file:
        raise DestinationError(f"set one of {PASSWORD_ENV} and {KEY_FILE_ENV}, not both")
    if password:
        return Credentials({"password": password}, secrets)
    if not key_file:
        raise DestinationError(
            f"no Snowflake credentials: set {KEY_FILE_ENV} (key-pair authentication, "
            f"with {PASSPHRASE_ENV} if the key is encrypted) or {PASSWORD_ENV}"
        )
    key = _private_key(Path(key_file).expanduser(), passphrase, Credentials({}, secrets))
    return Credentials({"private_key": key, "authenticator": "SNOWFLAKE_JWT"}, secrets)


def _private_key(path: Path, passphrase: str, hiding: Credentials) -> bytes:
    """The key as the connector takes it (DER, PKCS#8), with a message that says what is wrong
    when it cannot be read."""
    from cryptography.hazmat.primitives import serialization

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DestinationError(
            f"cannot read {KEY_FILE_ENV} {path}: {hiding.hide(exc.strerror)}"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() or None)
    except TypeError:  # encrypted without a passphrase given, or the other way round
        if passphrase:
            raise DestinationError(
                f"the private key in {path} is not encrypted: unset {PASSPHRASE_ENV}"
            ) from None
        raise DestinationError(
            f"the private key in {path} is encrypted: set {PASSPHRASE_ENV}"
        ) from None
    except ValueError:
        raise DestinationError(
            f"cannot load the private key in {path}: not a PEM private key, or the wrong "
            f"{PASSPHRASE_ENV}"
        ) from None
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def connect(target: Target, creds: Credentials, url: str) -> Any:
    """A new session (autocommit: transactions are explicit BEGIN ... COMMIT)."""
    arguments: dict[str, Any] = {
        "user": target.user,
        "account": target.account,
        "database": target.database,
        # Bound server-side as `?`: values never become SQL text.
        "paramstyle": "qmark",
        "session_parameters": dict(SESSION_PARAMETERS),
        **creds.arguments,
    }
    for name in ("warehouse", "role", "host", "port", "protocol", "login_timeout"):
        value = getattr(target, name)
        if value is not None:
            arguments[name] = value
    if target.network_timeout is not None:
        arguments["network_timeout"] = target.network_timeout
    try:
        return snowflake.connector.connect(**arguments)
    except Exception as exc:  # the connector raises more than its own Error classes
        raise DestinationError(f"cannot connect to {masked(url)}: {creds.hide(exc)}") from None


# Errors that say the session, or the way to it, is gone: the server ended it (or lost it),
# its token expired, or the network failed. Statement errors (SQL, data) are not among them.
SESSION_GONE_ERRNOS = frozenset({390104, 390111, 390112, 390114, 250002})
STATEMENT_ERRORS = (
    sf_errors.ProgrammingError,
    sf_errors.IntegrityError,
    sf_errors.DataError,
    sf_errors.NotSupportedError,
)


def session_lost(exc: BaseException) -> bool:
    if not isinstance(exc, sf_errors.Error):
        return False
    if exc.errno in SESSION_GONE_ERRNOS or str(exc.sqlstate or "").startswith("08"):
        return True
    return not isinstance(exc, STATEMENT_ERRORS)


def is_error(exc: BaseException) -> bool:
    return isinstance(exc, sf_errors.Error)
