"""Object storage: an S3 bucket (dagster-aws's ``S3Resource`` settings) or, when no
bucket is configured, a local folder laid out exactly like the bucket.

Both stores answer the same small interface (``head``, ``put``, ``verified_sha256``,
``sha256_of``, ``copy``, ``delete``), so the upload code has one path; only configuration
differs between them. The S3 store, and how each of its puts is verified, is in
``s3_store``. What a store says is checked, not trusted: ``verify_object`` (the
reconciliation, the cleanup) accepts only S3's full-object checksum or the bytes read back.

The local store is owner-only (0700 folders, 0600 files): it holds personal data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote_from_bytes

from ov_assets.fs import open_landing, private_dir

LOCAL_BUCKET = "local"
CHUNK_SIZE = 1 << 20  # what a hash or a copy reads at a time


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
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
    def put(
        self,
        key: str,
        path: Path,
        sha256: str,
        content_type: str,
        metadata: dict[str, str],
        only_if_absent: bool = False,
    ) -> None: ...
    def sha256_of(self, key: str) -> str | None: ...
    def still_as_written(self, objects: Collection[tuple[str, int | None, str]]) -> set[str]: ...
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


def verify_objects(
    store: ObjectStore, objects: Sequence[tuple[str, int | None, str]], workers: int
) -> list[str | None]:
    """``verify_object`` for each (key, size, sha256) of ``objects``, ``workers`` at a time (one
    or two requests each: a day's ~27,000 objects one after the other would take minutes of
    round trips); the answers in the order of ``objects``."""
    if len(objects) < 2 or workers <= 1:
        return [verify_object(store, key, size, sha) for key, size, sha in objects]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ov-verify") as pool:
        return list(pool.map(lambda o: verify_object(store, *o), objects))


def _copy_private(src: BinaryIO, dst: Path) -> None:
    """Copy the open file ``src`` to the new file ``dst``, created 0600 (never readable by
    others, not even for a moment)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK_SIZE):
            out.write(chunk)


class LocalObjectStore:
    """``$OV_DATA_DIR/object_store/{key}``: honest about being local (bucket ``local``).

    An object's metadata is kept beside the tree, in ``object_store.meta/{key}.json``, written
    after the object is published (a store listing shows objects only)."""

    bucket = LOCAL_BUCKET

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta_root = root.with_name(root.name + ".meta")
        # Resolved once: resolving the root and every key's whole path on each call cost ~9
        # walks of lstat per object (half of a history load's object step, issue 20).
        self._root = root.resolve()
        self._root_uri = self._root.as_uri()
        self._inside: set[Path] = set()  # folders found (on the disk) to lead nowhere outside

    @staticmethod
    def _check_key(key: str) -> None:
        """A key is relative and normalized, so by its name it cannot leave the store."""
        if not key or key.startswith("/") or "\0" in key or any(p in ("", ".", "..") for p in key.split("/")):
            raise ValueError(f"object key escapes the store: {key!r}")

    def _named(self, key: str) -> Path:
        """Where ``key`` lives, from its name alone (no file system access)."""
        self._check_key(key)
        return self._root / key

    def _path(self, key: str) -> Path:
        """``_named``, and no link on the way leads out of the store (checked on the disk: each
        folder once per store object, i.e. per run; the object's own name each time)."""
        path = self._named(key)
        parent = path.parent
        if parent not in self._inside:
            real = parent.resolve()
            if real != self._root and self._root not in real.parents:
                raise ValueError(f"object key escapes the store: {key!r}")
            self._inside.add(parent)
        if path.is_symlink() and self._root not in path.resolve().parents:
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    def url(self, key: str) -> str:
        """``file://`` URL of the key (as ``Path.as_uri`` quotes it), from its name alone."""
        self._check_key(key)
        return f"{self._root_uri}/{quote_from_bytes(os.fsencode(key))}"

    def _meta_path(self, key: str) -> Path:
        self._check_key(key)
        return self.meta_root / f"{key}.json"

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

    def _write_verified(
        self, src: BinaryIO, key: str, sha256: str, metadata: dict[str, str], only_if_absent: bool = True
    ) -> None:
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
        # The metadata goes first: a writer killed between the two leaves metadata without an
        # object (ignored, rewritten by the next put), never our object without the registry id
        # that tells a rerun it was this row's own put.
        meta = self._meta_path(key)
        private_dir(meta.parent)
        part = meta.with_name(f".{meta.name}.{os.getpid()}.part")
        part.unlink(missing_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**metadata, "sha256": sha256}, fh)
        os.replace(part, meta)
        self._publish(tmp, target, key, only_if_absent)

    def put(
        self,
        key: str,
        path: Path,
        sha256: str,
        content_type: str,
        metadata: dict[str, str],
        only_if_absent: bool = False,
    ) -> None:
        """Store the landing file ``path`` (never through a link: ``NotARegularFile``)."""
        with open_landing(path) as (fh, _):
            self._write_verified(fh, key, sha256, metadata, only_if_absent)

    def still_as_written(self, objects: Collection[tuple[str, int | None, str]]) -> set[str]:
        """None proven by a listing: a local object is read back (``verify_object``), a disk's
        read costs no round trip."""
        return set()

    def copy(self, src: str, dst: str, sha256: str) -> None:
        head = self.head(src)
        with self._path(src).open("rb") as fh:
            self._write_verified(fh, dst, sha256, head.metadata if head else {})

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)
