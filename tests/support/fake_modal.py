"""A fake of Modal's servers backed by a local folder; ``tests/resources`` patches it in."""

import threading
from pathlib import Path

from llmstack_dagster.core.dispatch.remote import RemoteRequest, run_remote


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
