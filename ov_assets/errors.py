"""Failures an operator can act on: one line that says what is wrong and what to do.

PostgreSQL and AWS raise exceptions written for developers; ``translate_*`` turn the ones we
recognise into an ``OperatorError`` with an instruction. Messages never hold secrets.
"""

from __future__ import annotations

import psycopg
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)


class OperatorError(RuntimeError):
    """An error whose message tells the operator what to do."""


class ConfigurationError(OperatorError):
    """A setting is missing or contradicts another (e.g. OV_ENV=production without a host)."""


class LandingFolderUnavailable(OperatorError):
    """The landing folder is missing or empty while something says it held files (the index
    lists files from it; a partition's reports were written from it)."""

    def __init__(self, empresa: str, folder: str, evidence: str) -> None:
        super().__init__(
            f"the landing folder of {empresa} ({folder}) is missing or empty, but {evidence}: is the folder "
            "mounted (and OV_DATA_DIR right)? Nothing was changed or loaded."
        )


# A connection that was working and is gone: fast shutdown / restart (57P01), crash (57P02),
# failover, network. libpq's wording differs with SSL ("SSL connection has been closed
# unexpectedly", "SSL SYSCALL error: EOF detected"), which must not read as an SSL setup problem.
LOST_SQLSTATES = {"57P01", "57P02", "08000", "08003", "08006"}
_LOST_MARKERS = (
    "server closed the connection unexpectedly",
    "connection has been closed unexpectedly",
    "ssl syscall error",
    "eof detected",
    "the connection is lost",
    "the connection is closed",
    "terminating connection due to administrator command",
    "terminating connection because of crash",
    "connection reset by peer",
    "broken pipe",
    "could not receive data from server",
    "could not send data to server",
    "server conn crashed",
)


def is_connection_lost(exc: BaseException | None) -> bool:
    """The server went away under an established connection (restart, failover, network):
    a new connection may well succeed."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if getattr(exc, "sqlstate", None) in LOST_SQLSTATES:
        return True
    lowered = str(exc).lower()
    return any(m in lowered for m in _LOST_MARKERS)


def _ssl_failure(target: str, text: str) -> OperatorError | None:
    """The usual verify-ca / verify-full failures, said in POSTGRES_* terms."""
    lowered = text.lower()
    first = text.splitlines()[0]
    if "does not match host name" in lowered:
        return OperatorError(
            f"PostgreSQL {target}: SSL host name mismatch ({first}). With POSTGRES_SSLMODE=verify-full "
            "the server's certificate must name POSTGRES_HOST: set POSTGRES_HOST to a name the "
            "certificate holds (for RDS the instance or cluster endpoint, not an IP address or a "
            "CNAME of your own)."
        )
    if (
        "certificate verify failed" in lowered
        or "unable to get local issuer certificate" in lowered
        or "self-signed certificate" in lowered
        or "self signed certificate" in lowered
    ):
        return OperatorError(
            f"PostgreSQL {target}: SSL: the server's certificate could not be verified against "
            f"POSTGRES_SSLROOTCERT ({first}). Point POSTGRES_SSLROOTCERT at the CA bundle that "
            "signed the server's certificate (for RDS: the current global-bundle.pem from "
            "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)."
        )
    if "no pg_hba.conf entry" in lowered and "no encryption" in lowered:
        return OperatorError(
            f"PostgreSQL {target}: the server accepts only SSL connections from here. Set "
            "POSTGRES_SSLMODE=verify-full and POSTGRES_SSLROOTCERT (the RDS CA bundle)."
        )
    return None


def translate_pg_error(exc: BaseException, target: str) -> BaseException:
    """Map a psycopg error to an ``OperatorError``; return ``exc`` itself when unknown.

    ``target`` names the server without credentials, e.g. ``host:port/db``.
    """
    text = str(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return OperatorError(
            f"PostgreSQL {target}: a table of ov-assets is missing ({text.splitlines()[0]}). "
            "Run the migrations: `ov-assets migrate`."
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return OperatorError(
            f"PostgreSQL {target}: permission denied ({text.splitlines()[0]}). Grant the loader "
            "role (ov_assets/warehouse/sql/002_roles.sql) to POSTGRES_USER."
        )
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        # Withheld like a data error: a wait inside a COPY (a concurrent insert of the same
        # radicado) carries the CSV line, personal data, in its CONTEXT.
        return WithheldDataError(
            f"PostgreSQL {target}: a lock wait went past lock_timeout ({text.splitlines()[0]}) and the "
            "retries did not get through: another load holds this partition (a run or backfill of the "
            "same partitions) or a session holds the table (a migration, VACUUM FULL, a manual "
            "transaction). Nothing was written. Wait for it to finish and rerun, or find the session "
            "with SELECT pid, application_name, state, query_start, query FROM pg_stat_activity WHERE "
            "pid IN (SELECT unnest(pg_blocking_pids(pid)) FROM pg_stat_activity) and end it if it is stuck.",
            original=exc,
        )
    if isinstance(exc, psycopg.OperationalError):
        lowered = text.lower()
        if "password authentication failed" in lowered or "authentication failed" in lowered:
            return OperatorError(
                f"PostgreSQL {target}: authentication failed for POSTGRES_USER. Check "
                "POSTGRES_USER and POSTGRES_PASSWORD."
            )
        ssl_failure = _ssl_failure(target, text)
        if ssl_failure is not None:
            return ssl_failure
        if is_connection_lost(exc):
            return OperatorError(
                f"PostgreSQL {target}: the connection to the server was lost ({text.splitlines()[0]}: "
                "restart, failover or network) and the retries did not get through. The load's "
                "transaction commits its whole range or nothing, so nothing half-written is left: check "
                "that the server is up, then rerun (reloading is safe, unchanged rows count as duplicates)."
            )
        if "does not exist" in lowered and "database" in lowered:
            return OperatorError(
                f"PostgreSQL {target}: the database in POSTGRES_DB does not exist. Create it or fix POSTGRES_DB."
            )
        if any(
            s in lowered
            for s in (
                "could not connect",
                "connection refused",
                "could not translate host",
                "timeout expired",
                "no route to host",
                "name or service not known",
                "connection timed out",
                "the database system is starting up",
                "the database system is shutting down",
                "the database system is in recovery",
            )
        ):
            return OperatorError(
                f"PostgreSQL {target}: cannot connect. Check POSTGRES_HOST and POSTGRES_PORT, "
                "that the server is up and that this machine may reach it (security group, VPN)."
            )
        if "ssl" in lowered or "certificate" in lowered:
            return OperatorError(
                f"PostgreSQL {target}: SSL failed ({text.splitlines()[0]}). Check POSTGRES_SSLMODE "
                "and POSTGRES_SSLROOTCERT (the RDS CA bundle for verify-full)."
            )
    if isinstance(exc, psycopg.Error) and (
        isinstance(exc, (psycopg.errors.IntegrityError, psycopg.errors.DataError))
        or exc.diag.message_detail
        or exc.diag.context
    ):
        # PostgreSQL's DETAIL may quote the offending row ("Failing row contains (...)"), its
        # CONTEXT the line a COPY was at (``COPY t, line 7: "..."``, whatever the error, a
        # statement timeout too) and a data error's primary message the value itself ('invalid
        # input syntax for type integer: "..."'): personal data must not reach Dagster's event
        # log, so only the primary message (a data error's class name instead), the SQLSTATE and
        # the constraint are kept, and the original is not chained.
        diag = exc.diag
        constraint = f", constraint {diag.constraint_name}" if diag.constraint_name else ""
        what = diag.message_primary
        if isinstance(exc, psycopg.errors.DataError) or not what:
            what = type(exc).__name__
        return WithheldDataError(
            f"PostgreSQL {target}: {what} "
            f"(SQLSTATE {diag.sqlstate}{constraint}); row values withheld, they may hold personal data",
            original=exc,
        )
    return exc


class WithheldDataError(OperatorError):
    """A database error whose detail (row values) was withheld; raised without its cause.
    ``original`` keeps that error in this process only (whether to retry depends on its
    SQLSTATE: a deadlock carries a DETAIL too), never in a message."""

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


class StoreAccessError(OperatorError):
    """The bucket cannot be used at all (credentials, permissions, bucket, region, endpoint):
    every further request would fail the same way, so a run stops at the first one."""


def _aws_region_hint(exc: ClientError) -> str | None:
    error = exc.response.get("Error", {})
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    return error.get("Region") or headers.get("x-amz-bucket-region")


def translate_aws_error(exc: BaseException, bucket: str, region: str | None = None) -> BaseException:
    """Map a boto3/botocore error to a one-line ``StoreAccessError`` saying what to fix;
    return ``exc`` itself when it is not an operator's problem (throttling, 5xx after retries,
    a single object's trouble). Messages name variables, never their values' secrets."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StoreAccessError(
            "AWS: no credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an "
            "AWS profile, or run on a machine with an instance role."
        )
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "?")
        return StoreAccessError(
            f"AWS S3: cannot reach the endpoint {endpoint}. Check AWS_ENDPOINT_URL (unset it for "
            "AWS itself) and AWS_REGION, and that this machine may reach S3 (network, proxy, VPC endpoint)."
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        actual = _aws_region_hint(exc)
        if (
            code
            in (
                "PermanentRedirect",
                "AuthorizationHeaderMalformed",
                "IllegalLocationConstraintException",
                "301",
                "TemporaryRedirect",
            )
            or status == 301
            or (code in ("400", "BadRequest") and actual and actual != region)
        ):
            hint = f" The bucket is in {actual}." if actual else ""
            return StoreAccessError(
                f"AWS S3: bucket '{bucket}' is not in region {region or '(unset)'}.{hint} Set "
                "AWS_REGION to the bucket's region (and AWS_ENDPOINT_URL, if set, to that region's endpoint)."
            )
        if code == "NoSuchBucket":
            return StoreAccessError(
                f"AWS S3: bucket '{bucket}' does not exist. Check AWS_S3_BUCKET_NAME (and the "
                "account and AWS_ENDPOINT_URL you are using)."
            )
        if code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
            "TokenRefreshRequired",
        ):
            return StoreAccessError(
                "AWS: the credentials are invalid or expired. Check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or renew the session/role credentials)."
            )
        if code in ("AccessDenied", "AllAccessDisabled", "403", "KMS.AccessDeniedException") or status == 403:
            return StoreAccessError(
                f"AWS S3: access denied to bucket '{bucket}' ({exc.operation_name}). Attach the policy "
                "in ov_assets/objects/aws/iam-policy-runtime.json (bucket and S3_BASE_PATH filled in) to the pipeline's "
                "role or user; with OV_S3_KMS_KEY_ID, the key policy must allow it too."
            )
    return exc
