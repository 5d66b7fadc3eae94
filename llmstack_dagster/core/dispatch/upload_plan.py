"""Upload a local folder to a Modal volume, skipping files whose SHA-256 is already there.

The volume keeps a manifest ``.llmstack-sha256.json`` (relative path -> digest) in the
remote folder; it is rewritten in the same batch as the files, so it never names a file
the batch did not write.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from pathlib import Path

import modal
from modal.exception import NotFoundError
from pydantic import BaseModel

HASH_MANIFEST = ".llmstack-sha256.json"
_CHUNK = 1 << 20


class UploadItem(BaseModel):
    local: str
    remote: str
    sha256: str
    size: int


class UploadPlan(BaseModel):
    remote_dir: str
    upload: list[UploadItem]
    skip: list[UploadItem]

    def manifest(self) -> dict[str, str]:
        """The manifest after this plan: every planned file, by path relative to the folder."""
        items = sorted(self.upload + self.skip, key=lambda i: i.remote)
        return {posixpath.relpath(i.remote, self.remote_dir): i.sha256 for i in items}

    @property
    def upload_bytes(self) -> int:
        return sum(i.size for i in self.upload)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def plan_upload(local_dir: Path, remote_dir: str, existing: dict[str, str]) -> UploadPlan:
    """Every file under ``local_dir``: skipped when ``existing`` has its digest, else uploaded."""
    upload, skip = [], []
    for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        if rel == HASH_MANIFEST:
            continue
        item = UploadItem(
            local=str(path),
            remote=posixpath.join(remote_dir, rel),
            sha256=sha256_file(path),
            size=path.stat().st_size,
        )
        (skip if existing.get(rel) == item.sha256 else upload).append(item)
    return UploadPlan(remote_dir=remote_dir, upload=upload, skip=skip)


def read_hash_manifest(volume: modal.Volume, remote_dir: str) -> dict[str, str]:
    """The folder's manifest in the volume, or empty when there is none yet."""
    try:
        data = b"".join(volume.read_file(posixpath.join(remote_dir, HASH_MANIFEST)))
    except (NotFoundError, FileNotFoundError):
        return {}
    return json.loads(data)


def apply_upload(volume: modal.Volume, plan: UploadPlan) -> None:
    """Upload the planned files and the new manifest in one batch (committed on exit)."""
    manifest = json.dumps(plan.manifest(), indent=1, sort_keys=True).encode()
    with volume.batch_upload(force=True) as batch:
        for item in plan.upload:
            batch.put_file(item.local, item.remote)
        batch.put_file(io.BytesIO(manifest), posixpath.join(plan.remote_dir, HASH_MANIFEST))


def sync_folder(volume: modal.Volume, local_dir: Path, remote_dir: str) -> UploadPlan:
    """Plan against the volume's manifest and upload what changed."""
    plan = plan_upload(local_dir, remote_dir, read_hash_manifest(volume, remote_dir))
    apply_upload(volume, plan)
    return plan
