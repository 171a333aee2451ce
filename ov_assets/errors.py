"""Failures an operator can act on: one line that says what is wrong and what to do.

PostgreSQL and AWS raise exceptions written for developers; ``translate_*`` turn the ones we
recognise into an ``OperatorError`` with an instruction. Messages never hold secrets.
"""

from __future__ import annotations

import psycopg
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)


class OperatorError(RuntimeError):
    """An error whose message tells the operator what to do."""


class ConfigurationError(OperatorError):
    """A setting is missing or contradicts another (e.g. OV_ENV=production without a host)."""


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
            "role (sql/002_roles.sql) to POSTGRES_USER."
        )
    if isinstance(exc, psycopg.OperationalError):
        lowered = text.lower()
        if "password authentication failed" in lowered or "authentication failed" in lowered:
            return OperatorError(
                f"PostgreSQL {target}: authentication failed for POSTGRES_USER. Check "
                "POSTGRES_USER and POSTGRES_PASSWORD."
            )
        if "does not exist" in lowered and "database" in lowered:
            return OperatorError(
                f"PostgreSQL {target}: the database in POSTGRES_DB does not exist. Create it or "
                "fix POSTGRES_DB."
            )
        if any(
            s in lowered
            for s in ("could not connect", "connection refused", "could not translate host",
                      "timeout expired", "no route to host", "name or service not known",
                      "connection timed out")
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
    return exc


def translate_aws_error(exc: BaseException, bucket: str, region: str | None = None) -> BaseException:
    """Map a boto3/botocore error to an ``OperatorError``; return ``exc`` when unknown."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return OperatorError(
            "AWS: no credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an "
            "AWS profile, or run on a machine with an instance role."
        )
    if isinstance(exc, EndpointConnectionError):
        return OperatorError(
            f"AWS S3: cannot reach the endpoint ({exc.kwargs.get('endpoint_url', '?')}). Check "
            "AWS_REGION and AWS_ENDPOINT_URL, and the network."
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return OperatorError(
                f"AWS S3: bucket '{bucket}' does not exist. Check AWS_S3_BUCKET_NAME (and the "
                "account you are using)."
            )
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            return OperatorError(
                f"AWS S3: access denied to bucket '{bucket}'. Attach the policy in "
                "aws/iam-policy-runtime.json to the pipeline's role or user."
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return OperatorError(
                "AWS: the access key is invalid or its secret does not match. Check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            )
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") or status == 301:
            actual = error.get("Region") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPHeaders", {}
            ).get("x-amz-bucket-region")
            hint = f" The bucket is in {actual}." if actual else ""
            return OperatorError(
                f"AWS S3: bucket '{bucket}' is not in region {region or '(unset)'}.{hint} Set "
                "AWS_REGION to the bucket's region."
            )
    return exc
