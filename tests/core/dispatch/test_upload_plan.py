"""Upload planning: files whose digest the volume manifest already has are skipped."""

import hashlib
from pathlib import Path

from llmstack_dagster.core.dispatch.upload_plan import HASH_MANIFEST, plan_upload, sha256_file


def make_dataset(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    (root / "index.json").write_text('{"dtype": "uint16"}')
    (root / "tokenizer.json").write_text('{"model": {}}')
    (root / "train" / "part-00000.bin").write_bytes(bytes(range(256)) * 64)
    return root


def test_first_upload_sends_everything(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d")
    plan = plan_upload(data, "data/abc", existing={})
    assert sorted(i.remote for i in plan.upload) == [
        "data/abc/index.json",
        "data/abc/tokenizer.json",
        "data/abc/train/part-00000.bin",
    ]
    assert plan.skip == []
    assert plan.upload_bytes == sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    shard = data / "train" / "part-00000.bin"
    assert plan.manifest()["train/part-00000.bin"] == hashlib.sha256(shard.read_bytes()).hexdigest()


def test_same_hash_is_skipped_changed_file_is_uploaded(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d")
    manifest = plan_upload(data, "data/abc", existing={}).manifest()
    (data / "tokenizer.json").write_text('{"model": {"changed": true}}')
    (data / HASH_MANIFEST).write_text("{}")  # a stray local manifest is never uploaded
    plan = plan_upload(data, "data/abc", existing=manifest)
    assert [i.remote for i in plan.upload] == ["data/abc/tokenizer.json"]
    assert sorted(i.remote for i in plan.skip) == [
        "data/abc/index.json",
        "data/abc/train/part-00000.bin",
    ]
    assert plan.manifest()["tokenizer.json"] == sha256_file(data / "tokenizer.json")
    assert HASH_MANIFEST not in plan.manifest()
