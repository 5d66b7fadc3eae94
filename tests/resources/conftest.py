"""Resource-test fixtures: a Dagster instance, and Modal's servers faked by a folder."""

import io
import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import modal
import pytest
from modal.exception import NotFoundError
from modal.volume import FileEntry, FileEntryType
from support.fake_modal import FakeCall, FakeModal


@pytest.fixture
def instance():
    """An ephemeral Dagster instance, disposed after the test."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


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
