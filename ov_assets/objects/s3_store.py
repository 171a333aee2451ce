"""The S3 object store: a bucket, with SHA-256 checksums, server-side encryption and metadata
on every put (the interface and the local store are in ``stores``).

Integrity of an S3 put (CONTRACT §7):

- the bytes sent are the bytes hashed: the file is read once, its SHA-256 compared with the
  one recorded when the landing file was indexed (a file changed since is refused);
- the landing file is opened as the index opens it (``nofollow.open_landing``): never through
  a symbolic link, only a regular file, so a file swapped for a link since it was indexed is
  refused (``NotARegularFile``, naming the file) and nothing outside the folder is uploaded;
- the SHA-256 travels with the request (``x-amz-checksum-sha256``; per part for multipart), so
  S3 rejects a body that does not match (``BadDigest``);
- the answer is checked: the checksum S3 echoes must be ours and, where the ETag is the MD5 of
  the content (single part, not SSE-KMS), that MD5 must be the one of our bytes; without either
  in the answer the object is looked up (``HeadObject``) and its checksum compared;
- the archive's puts are conditional (``If-None-Match: *``, ``only_if_absent``): an object
  already under the key is never overwritten, even by a concurrent writer; the caller is told
  (``ObjectExists``) and compares. (Daily reports, which are rewritten, put unconditionally.)

Multipart uploads (above ``multipart_threshold_mb``) carry a SHA-256 per part; S3's checksum of
the whole object is then the composite ``base64(sha256(part digests))-N``, which we compute
locally and compare; the file's own SHA-256 is in the ``sha256`` metadata. Metadata is what a
writer claims, not proof: ``verify_object`` (the reconciliation, the cleanup) accepts only S3's
full-object checksum or the object's bytes read back and hashed.

S3 answers a conditional write that races another one with 409 ``ConditionalRequestConflict``,
which botocore does not retry; ``put`` retries it (with backoff) a few times.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from ov_assets.errors import translate_aws_error
from ov_assets.fs import NotARegularFile, open_landing
from ov_assets.objects.stores import (
    CHUNK_SIZE,
    ConflictError,
    IntegrityError,
    ObjectExists,
    StoredObject,
    b64_of_hex,
    hex_of_b64,
)

# Fewer written keys than this are verified one request each (a listing would read more).
LIST_FROM = 50
MIN_PART_SIZE = 5 << 20  # S3's minimum part size (all parts but the last)
CONFLICT_ATTEMPTS = 5  # puts answered 409 ConditionalRequestConflict (botocore leaves them to us)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _not_found(exc: ClientError) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


def _conflict(exc: ClientError) -> bool:
    return (
        _error_code(exc) == "ConditionalRequestConflict"
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 409
    )


def _precondition_failed(exc: ClientError) -> bool:
    return (
        _error_code(exc) in ("PreconditionFailed", "412")
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
    )


def _condition(only_if_absent: bool) -> dict[str, str]:
    return {"IfNoneMatch": "*"} if only_if_absent else {}


class S3ObjectStore:
    """A bucket, with SHA-256 checksums, server-side encryption and metadata on every put."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        kms_key_id: str = "",
        region: str | None = None,
        multipart_threshold: int = 16 << 20,
        multipart_chunksize: int = 8 << 20,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.region = region
        self.multipart_threshold = max(multipart_threshold, MIN_PART_SIZE)
        self.multipart_chunksize = max(multipart_chunksize, MIN_PART_SIZE)
        self._bucket_seen = False
        # key -> (ETag, size, SHA-256) of each write whose answer proved its SHA-256 (``still_as_written``)
        self._written: dict[str, tuple[str, int, str]] = {}

    @contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        """Errors of a write to ``key``: a refused condition is ``ObjectExists``, our own
        integrity findings pass through, anything else becomes an operator message."""
        try:
            yield
        except ClientError as exc:
            if _precondition_failed(exc):
                raise ObjectExists(key) from None
            if _conflict(exc):
                raise ConflictError(
                    f"{key}: S3 answered 409 ConditionalRequestConflict (another write to this key "
                    "was in flight); nothing was stored, the next run retries"
                ) from None
            raise self._fail(exc) from exc
        except (ObjectExists, IntegrityError, ConflictError, NotARegularFile):
            raise
        except Exception as exc:
            raise self._fail(exc) from exc

    def _fail(self, exc: BaseException) -> BaseException:
        return translate_aws_error(exc, self.bucket, self.region)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def presigned_get(self, key: str, expires_s: int, bucket: str | None = None) -> str:
        """An HTTPS GET URL for ``key`` (in ``bucket``, default ours) that works without
        credentials for ``expires_s`` seconds: signed locally with this client's credentials (no
        request is made), so it opens only what those credentials may read."""
        try:
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket or self.bucket, "Key": key}, ExpiresIn=expires_s
            )
        except Exception as exc:
            raise self._fail(exc) from exc
        return url

    # -- reading ----------------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _not_found(exc):
                self._confirm_bucket()
                return None
            raise self._fail(exc) from exc
        except Exception as exc:
            raise self._fail(exc) from exc

    def _confirm_bucket(self) -> None:
        """A HEAD answers a bare 404 (no body, no code) both for a missing key and for any key
        of a missing bucket: asked once per store, so that a deleted bucket or a wrong endpoint
        is said as such instead of every object reading as missing."""
        if self._bucket_seen:
            return
        try:  # (a listing, not HeadBucket: the same s3:ListBucket, and a missing bucket says so in a body)
            self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except Exception as exc:
            raise self._fail(exc) from exc
        self._bucket_seen = True

    @staticmethod
    def _stored(resp: dict[str, Any]) -> StoredObject:
        checksum = resp.get("ChecksumSHA256")
        size = int(resp["ContentLength"])
        multipart = "-" in str(resp.get("ETag", "")) or int(resp.get("PartsCount") or 1) > 1
        if (
            checksum
            and "-" not in checksum
            and not multipart
            and resp.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        ):
            return StoredObject(size, hex_of_b64(checksum), metadata=resp.get("Metadata", {}))
        metadata = resp.get("Metadata", {})
        return StoredObject(size, metadata.get("sha256"), verified=False, metadata=metadata)

    def head(self, key: str) -> StoredObject | None:
        resp = self._head(key)
        return None if resp is None else self._stored(resp)

    def sha256_of(self, key: str) -> str | None:
        """Recompute the SHA-256 from the object's bytes."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            digest = hashlib.sha256()
            for chunk in iter(lambda: body.read(CHUNK_SIZE), b""):
                digest.update(chunk)
            return digest.hexdigest()
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise self._fail(exc) from exc
        except Exception as exc:
            raise self._fail(exc) from exc

    def still_as_written(self, objects: Collection[tuple[str, int | None, str]]) -> set[str]:
        """The keys of ``objects`` (key, size, SHA-256 as the registry has them) that this store
        wrote with exactly that size and SHA-256, S3's answer proving the SHA-256, and that a
        listing now shows with that write's ETag and size: found ~1,000 a request instead of one
        request each. What it rests on: S3's listing is strongly consistent, and another write
        to the key gives another ETag (an MD5 of the bytes under SSE-S3; per write under
        SSE-KMS). The listing covers the keys' common folder (a partition's, in the default
        layout) for at most about twice the pages they fill; keys it does not show as written
        are left to ``verify_object``."""
        written = {
            key: (etag, size)
            for key, size, sha256 in objects
            if (w := self._written.get(key)) is not None and (size, sha256) == w[1:] and (etag := w[0])
        }
        if len(written) < LIST_FROM:
            return set()
        folders: list[str] = []  # the folders every key is under, outermost first
        for level in zip(*(k.split("/")[:-1] for k in written), strict=False):
            if len(set(level)) > 1:
                break
            folders.append(level[0])
        pages = 2 + 2 * len(written) // 1000
        confirmed: set[str] = set()
        try:
            listing = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix="".join(f"{f}/" for f in folders)
            )
            for page in itertools.islice(listing, pages):
                for obj in page.get("Contents", ()):
                    mine = written.get(obj["Key"])
                    if mine is not None and mine == (str(obj.get("ETag", "")).strip('"'), int(obj["Size"])):
                        confirmed.add(obj["Key"])
        except Exception as exc:
            raise self._fail(exc) from exc
        return confirmed

    def verified_sha256(self, key: str) -> str | None:
        """The object's SHA-256 from S3 itself: its full-object checksum, else its bytes."""
        stored = self.head(key)
        if stored is None:
            return None
        return stored.sha256 if stored.verified else self.sha256_of(key)

    # -- writing ----------------------------------------------------------------------------

    def _sse(self) -> dict[str, str]:
        if self.kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        return {"ServerSideEncryption": "AES256"}

    def _etag_is_md5(self) -> bool:
        return not self.kms_key_id

    def put(
        self,
        key: str,
        path: Path,
        sha256: str,
        content_type: str,
        metadata: dict[str, str],
        only_if_absent: bool = False,
    ) -> None:
        """Store the landing file ``path`` under ``key``; with ``only_if_absent`` (the PQR
        archive) never over an existing object (``ObjectExists``). ``IntegrityError`` when the
        bytes are not the expected ones; ``NotARegularFile`` when ``path`` is a link (never
        followed) or no regular file."""
        common = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "Metadata": {**metadata, "sha256": sha256},
            **self._sse(),
        }

        def write() -> None:
            with open_landing(path) as (fh, st):
                if st.st_size < self.multipart_threshold:
                    self._put_single(fh, path.name, sha256, common, only_if_absent)
                else:
                    self._put_multipart(fh, path.name, sha256, common, only_if_absent)

        self._write_retrying_conflicts(key, write)

    def _write_retrying_conflicts(self, key: str, write: Callable[[], None]) -> None:
        """Run ``write`` again when S3 answers 409 ConditionalRequestConflict (botocore does
        not retry it), up to ``CONFLICT_ATTEMPTS`` times, with jittered backoff."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with self._writing(key):
                    write()
                return
            except ConflictError:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                # Full jitter: the writers that collided do not collide again in step.
                time.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))

    def _put_single(self, fh: BinaryIO, name: str, sha256: str, common: dict[str, Any], only_if_absent: bool) -> None:
        data = fh.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{name} changed since it was indexed (sha256 differs); not uploaded")
        checksum = b64_of_hex(sha256)
        resp = self.client.put_object(
            **common, Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum, **_condition(only_if_absent)
        )
        self._check_answer(common["Key"], resp, checksum, hashlib.md5(data).hexdigest(), len(data), sha256)

    def _check_answer(
        self, key: str, resp: dict[str, Any], checksum: str, md5: str | None, size: int, sha256: str
    ) -> None:
        """Whether S3's answer vouches for the bytes (checksum, else ETag as MD5, else a HEAD's
        checksum): ``IntegrityError`` if not. The write's ETag, size and whole-file ``sha256``
        are kept for ``still_as_written``."""
        evidence = False
        echoed = resp.get("ChecksumSHA256")
        if echoed:
            if echoed.split("-")[0] != checksum:
                raise IntegrityError(f"{key}: S3 reports checksum {echoed}, expected {checksum}")
            evidence = True
        etag = str(resp.get("ETag", "")).strip('"')
        if md5 and self._etag_is_md5() and len(etag) == 32 and "-" not in etag:
            if etag != md5:
                raise IntegrityError(f"{key}: S3 received different bytes (ETag {etag}, MD5 {md5})")
            evidence = True
        if not evidence:
            # Nothing in the answer vouches for the bytes: ask S3 for the stored checksum.
            head = self._head(key)
            stored = None if head is None else head.get("ChecksumSHA256")
            if head is None or int(head["ContentLength"]) != size or not stored or stored.split("-")[0] != checksum:
                raise IntegrityError(f"{key}: verification after upload failed (size or checksum)")
            etag = str(head.get("ETag", "")).strip('"')
        if etag:
            self._written[key] = (etag, size, sha256)

    def _put_multipart(
        self, fh: BinaryIO, name: str, sha256: str, common: dict[str, Any], only_if_absent: bool
    ) -> None:
        upload = self.client.create_multipart_upload(**common, ChecksumAlgorithm="SHA256")
        upload_id = upload["UploadId"]
        parts, digests = [], []
        whole = hashlib.sha256()
        # No AbortMultipartUpload on failure: the runtime policy does not grant it; the bucket's
        # lifecycle rule removes incomplete uploads (aws/bucket-lifecycle.json).
        number = size = 0
        while data := fh.read(self.multipart_chunksize):
            number += 1
            size += len(data)
            whole.update(data)
            digest = hashlib.sha256(data).digest()
            checksum = base64.b64encode(digest).decode()
            resp = self.client.upload_part(
                Bucket=self.bucket,
                Key=common["Key"],
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
            etag = str(resp.get("ETag", "")).strip('"')
            if self._etag_is_md5() and len(etag) == 32 and etag != hashlib.md5(data).hexdigest():
                raise IntegrityError(f"{common['Key']}: part {number} arrived with different bytes")
            if resp.get("ChecksumSHA256") and resp["ChecksumSHA256"] != checksum:
                raise IntegrityError(f"{common['Key']}: part {number} checksum differs")
            parts.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": checksum})
            digests.append(digest)
        if whole.hexdigest() != sha256:
            raise IntegrityError(f"{name} changed since it was indexed (sha256 differs); not uploaded")
        composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
        try:
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=common["Key"],
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **_condition(only_if_absent),
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
            # A retried completion whose first answer was lost: the upload is gone because it
            # was completed. The caller compares what the key holds, as for any taken key.
            raise ObjectExists(common["Key"]) from None
        self._check_answer(common["Key"], resp, composite, None, size, sha256)

    def copy(self, src: str, dst: str, sha256: str) -> None:
        """Server-side copy of ``src`` to a free ``dst`` (``ObjectExists`` otherwise), with S3
        computing a full-object SHA-256 of the copy, which must be ``sha256``."""

        def write() -> None:
            if self._head(dst) is not None:  # S3 honours If-None-Match on copies; not every server does
                raise ObjectExists(dst)
            head = self._head(src)
            if head is None:
                raise IntegrityError(f"{src}: source object missing")
            metadata = {**head.get("Metadata", {}), "sha256": sha256}
            resp = self.client.copy_object(
                Bucket=self.bucket,
                Key=dst,
                CopySource={"Bucket": self.bucket, "Key": src},
                MetadataDirective="REPLACE",
                Metadata=metadata,
                ContentType=head.get("ContentType", "application/octet-stream"),
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
                **self._sse(),
            )
            got = resp.get("CopyObjectResult", {}).get("ChecksumSHA256")
            if got and "-" not in got:
                if hex_of_b64(got) != sha256:
                    raise IntegrityError(f"{dst}: copied object's sha256 differs from the registry")
            elif self.verified_sha256(dst) != sha256:
                raise IntegrityError(f"{dst}: copied object's sha256 differs from the registry")

        self._write_retrying_conflicts(dst, write)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._fail(exc) from exc
