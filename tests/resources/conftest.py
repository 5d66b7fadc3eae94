"""A tiny real token-shard dataset, and a fake of Modal's network calls backed by a folder."""

import io
import json
import shutil
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import modal
import pytest
from modal.exception import NotFoundError
from modal.volume import FileEntry, FileEntryType

from llmstack_dagster.core.dispatch.remote import RemoteRequest, run_remote
from llmstack_dagster.core.schema import DOCUMENT_SCHEMA, documents_table, make_document
from llmstack_dagster.core.storage import ShardManifest, ShardWriter, Storage, write_manifest
from llmstack_dagster.core.training.token_shards import TokenShardConfig, run_token_shards
from llmstack_dagster.core.training.tokenizer import (
    TokenizerConfig,
    save_tokenizer,
    train_tokenizer,
)

TINY_MODEL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_hidden": 64}


def tiny_train_config(**overrides) -> dict:
    base = dict(
        data_dir="unset",
        out_dir="unset",
        model_overrides=TINY_MODEL,
        seq_len=32,
        micro_batch_size=4,
        max_steps=4,
        log_every=1,
        checkpoint_every=2,
        optim={"lr": 3e-3, "warmup_steps": 1},
        eval={"every": 0, "batches": 1, "max_new_tokens": 3, "prompts": ["The"]},
        export_hf=True,
        cpu_threads=1,
    )
    return base | overrides


@pytest.fixture
def instance():
    """An ephemeral Dagster instance, disposed after the test."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="session")
def token_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hamlet paragraphs and news articles, tokenized with a 384-token BPE."""
    day = datetime(2024, 1, 1, tzinfo=UTC)
    book = (shared_data / "pretrain/books/hamlet_gut.txt").read_text()
    docs = [
        make_document(id=f"h/{i}", text=p, domain="books", source="gut", created=day)
        for i, p in enumerate(p for p in book.split("\n\n") if len(p) > 200)
    ]
    news = (shared_data / "pretrain/news/cnn_dailymail.jsonl").read_text().splitlines()[:20]
    docs += [
        make_document(
            id=f"n/{i}", text=json.loads(line)["text"], domain="news", source="cnn", created=day
        )
        for i, line in enumerate(news)
    ]
    storage = Storage(str(tmp_path_factory.mktemp("corpus")))
    writer = ShardWriter(storage, "mixture/all", DOCUMENT_SCHEMA)
    writer.write_table(documents_table(docs))
    manifest = ShardManifest(asset="mixture", partition="all", shards=writer.close())
    write_manifest(storage, manifest)
    tokenizer = train_tokenizer((d["text"] for d in docs), TokenizerConfig(vocab_size=384))
    tokenizer_file = save_tokenizer(tokenizer, tmp_path_factory.mktemp("tok"))
    run_token_shards(
        storage, manifest, tokenizer_file, TokenShardConfig(val_fraction=0.1, num_workers=0)
    )
    return Path(storage.local_path("tokenized_shards"))


class FakeCall:
    """A FunctionCall whose work runs ``run_remote`` in a thread against the fake volume."""

    def __init__(self, fake: "FakeModal", request: dict) -> None:
        self.object_id = f"fc-{len(fake.calls)}"
        self.cancelled = False
        self.result: dict | None = None
        self.error: BaseException | None = None
        req = RemoteRequest.model_validate(request | {"mount": str(fake.root), "poll_s": 0.1})
        emit = fake.queue_for(req.partition).extend
        self.thread = threading.Thread(target=self._work, args=(req, fake, emit), daemon=True)
        self.thread.start()

    def _work(self, req: RemoteRequest, fake: "FakeModal", emit) -> None:
        try:
            self.result = run_remote(req, fake, emit)
        except BaseException as err:  # noqa: BLE001 - surfaced by get()
            self.error = err

    def get(self, timeout: float | None = None) -> dict:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError
        if self.error is not None:
            raise self.error
        return self.result

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = True


class FakeModal:
    """Stands in for Modal's servers: the volume is a folder, queues are lists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.queues: dict[str, list] = {}
        self.calls: list[FakeCall] = []
        self.commits = 0
        self.uploaded: list[str] = []
        self.spawn_hook = None

    def queue_for(self, partition: str) -> list:
        return self.queues.setdefault(partition, [])

    # the volume seen from inside the container
    def reload(self) -> None:
        pass

    def commit(self) -> None:
        self.commits += 1


@pytest.fixture
def fake_modal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeModal:
    """Patch only the methods of Modal objects that would reach Modal's servers."""
    fake = FakeModal(tmp_path / "volume")
    fake.root.mkdir()

    class Batch:
        def put_file(self, local, remote) -> None:
            target = fake.root / str(remote).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(local, io.BytesIO):
                target.write_bytes(local.getvalue())
            else:
                shutil.copyfile(local, target)
                fake.uploaded.append(str(remote))

    @contextmanager
    def batch_upload(self, force: bool = False):
        yield Batch()

    def read_file(self, path: str):
        target = fake.root / path.lstrip("/")
        if not target.is_file():
            raise NotFoundError(path)
        yield target.read_bytes()

    def listdir(self, path: str, recursive: bool = False):
        base = fake.root / path.lstrip("/")
        return [
            FileEntry(str(p.relative_to(fake.root)), FileEntryType.FILE, 0, p.stat().st_size)
            for p in sorted(base.rglob("*"))
            if p.is_file()
        ]

    def read_file_into_fileobj(self, path: str, fileobj) -> int:
        return fileobj.write((fake.root / path.lstrip("/")).read_bytes())

    def remove_file(self, path: str, recursive: bool = False) -> None:
        target = fake.root / path.lstrip("/")
        if not target.exists():
            raise NotFoundError(path)
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    @contextmanager
    def app_run(self, *args, **kwargs):
        yield self

    def spawn(self, request: dict):
        call = fake.spawn_hook(fake, request) if fake.spawn_hook else FakeCall(fake, request)
        fake.calls.append(call)
        return call

    def get_many(self, n_values: int, block: bool = True, timeout=None, *, partition=None):
        pending = fake.queue_for(partition)
        batch, pending[:] = pending[:n_values], pending[n_values:]
        return batch

    monkeypatch.setattr(modal.Volume, "batch_upload", batch_upload)
    monkeypatch.setattr(modal.Volume, "read_file", read_file)
    monkeypatch.setattr(modal.Volume, "listdir", listdir)
    monkeypatch.setattr(modal.Volume, "read_file_into_fileobj", read_file_into_fileobj)
    monkeypatch.setattr(modal.Volume, "remove_file", remove_file)
    monkeypatch.setattr(modal.App, "run", app_run)
    monkeypatch.setattr(modal.Function, "spawn", spawn)
    monkeypatch.setattr(modal.Queue, "get_many", get_many)
    return fake
