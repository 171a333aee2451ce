"""Object storage: an S3 bucket (through dagster-aws's ``S3Resource`` settings) or, when no
bucket is configured, a local folder laid out exactly like the bucket.

Both stores answer the same small interface (``head``, ``put``, ``verified_sha256``,
``sha256_of``, ``copy``, ``delete``), so the upload code has one path; only configuration
differs between them.

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

The local store is owner-only (0700 folders, 0600 files): it holds personal data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ov_assets.errors import ConfigurationError, translate_aws_error
from ov_assets.fs import NotARegularFile, open_landing
from ov_assets.reports.consolidated import private_dir

LOCAL_BUCKET = "local"
_CHUNK = 1 << 20
MIN_PART_SIZE = 5 << 20  # S3's minimum part size (all parts but the last)
CONFLICT_ATTEMPTS = 5  # puts answered 409 ConditionalRequestConflict (botocore leaves them to us)

# Called with every boto3 client ``ObjectStoreResource.open()`` creates (tests register
# botocore event hooks through it, e.g. ``client.meta.events.register("before-call.s3.*", f)``).
CLIENT_HOOKS: list[Callable[[Any], None]] = []


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def b64_of_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def hex_of_b64(value: str) -> str:
    return base64.b64decode(value).hex()


class ObjectExists(Exception):
    """The key is taken (conditional put refused); nothing was written."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object already exists: {key}")
        self.key = key


class IntegrityError(OSError):
    """What the store holds (or what we would send) is not the landing file's bytes."""


class ConflictError(OSError):
    """S3 kept answering 409 ConditionalRequestConflict: another write to the key was in
    flight each time. Nothing is lost; the registry row stays open and a later run retries."""


@dataclass(frozen=True)
class StoredObject:
    """What the store says about an object: its size and SHA-256 (hex).

    ``sha256`` is S3's full-object SHA-256 checksum when the object has one, else the
    ``sha256`` metadata we wrote (multipart objects, whose S3 checksum is a composite);
    ``verified`` says whether it came from S3's checksum (True) or from metadata (False).
    ``metadata``: the object's user metadata (who wrote it, for what registry row).
    """

    size: int
    sha256: str | None
    verified: bool = True
    metadata: dict[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    bucket: str

    def url(self, key: str) -> str: ...
    def head(self, key: str) -> StoredObject | None: ...
    def put(self, key: str, path: Path, sha256: str, content_type: str, metadata: dict[str, str],
            only_if_absent: bool = False) -> None: ...
    def sha256_of(self, key: str) -> str | None: ...
    def verified_sha256(self, key: str) -> str | None: ...
    def copy(self, src: str, dst: str, sha256: str) -> None: ...
    def delete(self, key: str) -> None: ...


def verify_object(store: ObjectStore, key: str, size: int | None, sha256: str) -> str | None:
    """Why ``key`` does not hold exactly the bytes of SHA-256 ``sha256`` (``missing``,
    ``size_differs``, ``sha256_differs``), or None when it does. Proof is S3's full-object
    checksum or the bytes read back and hashed, never the ``sha256`` metadata a writer set
    (a multipart object's only full-file hash): only proof may let a last local copy go."""
    head = store.head(key)
    if head is None:
        return "missing"
    if size is not None and head.size != size:
        return "size_differs"
    got = head.sha256 if head.verified else store.sha256_of(key)
    return None if got == sha256 else "sha256_differs"


def _copy_private(src: BinaryIO, dst: Path) -> None:
    """Copy the open file ``src`` to the new file ``dst``, created 0600 (never readable by
    others, not even for a moment)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)


class LocalObjectStore:
    """``$OV_DATA_DIR/object_store/{key}``: honest about being local (bucket ``local``).

    An object's metadata is kept beside the tree, in ``object_store.meta/{key}.json``, written
    after the object is published (a store listing shows objects only)."""

    bucket = LOCAL_BUCKET

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta_root = root.with_name(root.name + ".meta")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def _meta_path(self, key: str) -> Path:
        return self.meta_root / f"{self._path(key).relative_to(self.root.resolve())}.json"

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            metadata = json.loads(self._meta_path(key).read_text())
        except (FileNotFoundError, ValueError):
            metadata = {}
        return StoredObject(path.stat().st_size, sha256_file(path), metadata=metadata)

    def sha256_of(self, key: str) -> str | None:
        path = self._path(key)
        return sha256_file(path) if path.is_file() else None

    verified_sha256 = sha256_of

    def _publish(self, tmp: Path, target: Path, key: str, only_if_absent: bool = True) -> None:
        """Move ``tmp`` to ``target``; with ``only_if_absent`` unless ``target`` exists (atomic:
        a hard link)."""
        if not only_if_absent:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise ObjectExists(key) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _write_verified(self, src: BinaryIO, key: str, sha256: str, metadata: dict[str, str],
                        only_if_absent: bool = True) -> None:
        target = self._path(key)
        private_dir(target.parent)
        if only_if_absent and target.exists():
            raise ObjectExists(key)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{id(src)}.part")
        tmp.unlink(missing_ok=True)  # left by a killed writer of this process id
        _copy_private(src, tmp)
        if sha256_file(tmp) != sha256:
            tmp.unlink()
            raise IntegrityError(f"checksum mismatch writing {key}: the source is not the expected bytes")
        self._publish(tmp, target, key, only_if_absent)
        meta = self._meta_path(key)
        private_dir(meta.parent)
        part = meta.with_name(f".{meta.name}.{os.getpid()}.part")
        part.unlink(missing_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**metadata, "sha256": sha256}, fh)
        os.replace(part, meta)

    def put(self, key: str, path: Path, sha256: str, content_type: str, metadata: dict[str, str],
            only_if_absent: bool = False) -> None:
        """Store the landing file ``path`` (never through a link: ``NotARegularFile``)."""
        with open_landing(path) as (fh, _):
            self._write_verified(fh, key, sha256, metadata, only_if_absent)

    def copy(self, src: str, dst: str, sha256: str) -> None:
        head = self.head(src)
        with self._path(src).open("rb") as fh:
            self._write_verified(fh, dst, sha256, head.metadata if head else {})

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _not_found(exc: ClientError) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


def _conflict(exc: ClientError) -> bool:
    return _error_code(exc) == "ConditionalRequestConflict" or \
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 409


def _precondition_failed(exc: ClientError) -> bool:
    return _error_code(exc) in ("PreconditionFailed", "412") or \
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412


def _condition(only_if_absent: bool) -> dict[str, str]:
    return {"IfNoneMatch": "*"} if only_if_absent else {}


class S3ObjectStore:
    """A bucket, with SHA-256 checksums, server-side encryption and metadata on every put."""

    def __init__(self, client: Any, bucket: str, kms_key_id: str = "", region: str | None = None,
                 multipart_threshold: int = 16 << 20, multipart_chunksize: int = 8 << 20) -> None:
        self.client = client
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.region = region
        self.multipart_threshold = max(multipart_threshold, MIN_PART_SIZE)
        self.multipart_chunksize = max(multipart_chunksize, MIN_PART_SIZE)
        self._bucket_seen = False

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
                    "was in flight); nothing was stored, the next run retries") from None
            raise self._fail(exc) from exc
        except (ObjectExists, IntegrityError, ConflictError, NotARegularFile):
            raise
        except Exception as exc:
            raise self._fail(exc) from exc

    def _fail(self, exc: BaseException) -> BaseException:
        return translate_aws_error(exc, self.bucket, self.region)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

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
        if checksum and "-" not in checksum and not multipart \
                and resp.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
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
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                digest.update(chunk)
            return digest.hexdigest()
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise self._fail(exc) from exc
        except Exception as exc:
            raise self._fail(exc) from exc

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

    def put(self, key: str, path: Path, sha256: str, content_type: str, metadata: dict[str, str],
            only_if_absent: bool = False) -> None:
        """Store the landing file ``path`` under ``key``; with ``only_if_absent`` (the PQR
        archive) never over an existing object (``ObjectExists``). ``IntegrityError`` when the
        bytes are not the expected ones; ``NotARegularFile`` when ``path`` is a link (never
        followed) or no regular file."""
        common = {"Bucket": self.bucket, "Key": key, "ContentType": content_type,
                  "Metadata": {**metadata, "sha256": sha256}, **self._sse()}

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
                time.sleep(random.uniform(0, min(2.0, 0.1 * 2 ** attempt)))

    def _put_single(self, fh: BinaryIO, name: str, sha256: str, common: dict[str, Any], only_if_absent: bool) -> None:
        data = fh.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{name} changed since it was indexed (sha256 differs); not uploaded")
        checksum = b64_of_hex(sha256)
        resp = self.client.put_object(**common, Body=data, ChecksumAlgorithm="SHA256",
                                      ChecksumSHA256=checksum, **_condition(only_if_absent))
        self._check_answer(common["Key"], resp, checksum, hashlib.md5(data).hexdigest(), len(data))

    def _check_answer(self, key: str, resp: dict[str, Any], checksum: str, md5: str | None, size: int) -> None:
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
            if head is None or int(head["ContentLength"]) != size or not stored \
                    or stored.split("-")[0] != checksum:
                raise IntegrityError(f"{key}: verification after upload failed (size or checksum)")

    def _put_multipart(self, fh: BinaryIO, name: str, sha256: str, common: dict[str, Any],
                       only_if_absent: bool) -> None:
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
            resp = self.client.upload_part(Bucket=self.bucket, Key=common["Key"], UploadId=upload_id,
                                           PartNumber=number, Body=data, ChecksumAlgorithm="SHA256",
                                           ChecksumSHA256=checksum)
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
            resp = self.client.complete_multipart_upload(Bucket=self.bucket, Key=common["Key"], UploadId=upload_id,
                                                         MultipartUpload={"Parts": parts},
                                                         **_condition(only_if_absent))
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
            # A retried completion whose first answer was lost: the upload is gone because it
            # was completed. The caller compares what the key holds, as for any taken key.
            raise ObjectExists(common["Key"]) from None
        self._check_answer(common["Key"], resp, composite, None, size)

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
                Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                MetadataDirective="REPLACE", Metadata=metadata,
                ContentType=head.get("ContentType", "application/octet-stream"),
                ChecksumAlgorithm="SHA256", IfNoneMatch="*", **self._sse(),
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
