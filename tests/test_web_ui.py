"""The web UI: the webserver starts, GraphQL lists the asset and its partitions, and headless
Chromium (Debian's, driven by Playwright) renders the asset graph showing ``raw_documents``
and a chart metadata entry in place on an asset's page."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.ui


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture(scope="module")
def webserver(dagster_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = dagster_home
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LLMSTACK_STORAGE_ROOT": str(tmp_path_factory.mktemp("store")),
    }
    log = (home / "webserver.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((home / "webserver.log").read_text()[-3000:]) from None
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_graphql_lists_raw_documents_and_partitions(webserver: str) -> None:
    data = _graphql(
        webserver,
        """{
      assetNodes { assetKey { path } partitionKeysByDimension { partitionKeys } groupName }
    }""",
    )
    nodes = {tuple(n["assetKey"]["path"]): n for n in data["data"]["assetNodes"]}
    raw = nodes[("raw_documents",)]
    (dimension,) = raw["partitionKeysByDimension"]
    assert {"web", "books", "code", "news", "academic", "wiki"} <= set(dimension["partitionKeys"])
    assert raw["groupName"] == "curation"


def test_chromium_renders_the_asset_graph(webserver: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # the asset's lineage graph: raw_documents and its downstream neighbours
            page.goto(f"{webserver}/assets/raw_documents?view=lineage", timeout=120_000)
            page.get_by_text("raw_documents").first.wait_for(timeout=120_000)
            skip = page.get_by_role("button", name="Skip")  # first-visit newsletter dialog
            try:
                skip.first.wait_for(timeout=20_000)
                skip.first.click()
            except PlaywrightTimeout:
                pass
            # the graph canvas draws it as a node with its partitions, next to its children
            page.locator('[data-tooltip="raw_documents"]').first.wait_for(timeout=60_000)
            page.get_by_text("6 partitions").first.wait_for(timeout=60_000)
            page.get_by_text("document_fingerprints").first.wait_for(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "asset_graph.png"), full_page=True)
            assert "raw_documents" in page.content()
        finally:
            browser.close()
    assert (SCREENSHOTS / "asset_graph.png").stat().st_size > 10_000


def _skip_first_visit_dialog(page: "Page") -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")  # the newsletter dialog of a first visit
    try:
        skip.first.wait_for(timeout=20_000)
        skip.first.click()
    except PlaywrightTimeout:
        pass


def test_chart_metadata_is_visible_on_the_asset_page(
    webserver: str, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss curve as the asset reports it: the image shows on the asset's Overview tab,
    loaded, without opening a "[Show Markdown]" dialog."""
    from dagster import AssetMaterialization, DagsterInstance
    from playwright.sync_api import sync_playwright

    from llmstack_dagster.assets.common import chart_metadata
    from llmstack_dagster.assets.training_runs import loss_curve_png
    from llmstack_dagster.core.storage import Storage

    store = Storage(str(tmp_path / "store"))
    metrics = [{"step": s, "train/loss": 7.0 - s / 10, "val/loss": 7.1 - s / 10} for s in (0, 10)]
    store.write_bytes("pretrained_checkpoint/loss_curve.png", loss_curve_png(metrics))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # dagster.yaml reads it
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        chart = chart_metadata(
            instance, store, "pretrained_checkpoint/loss_curve.png", "loss curve"
        )
        assert "/logs/" in chart.value and len(chart.value) < 1000  # short enough to show inline
        instance.report_runless_asset_event(
            AssetMaterialization("pretrained_checkpoint", metadata={"loss_curve": chart})
        )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{webserver}/assets/pretrained_checkpoint", timeout=120_000)
            page.get_by_text("pretrained_checkpoint").first.wait_for(timeout=120_000)
            _skip_first_visit_dialog(page)
            image = page.locator('img[alt="loss curve"]').first
            image.wait_for(state="visible", timeout=60_000)
            page.wait_for_function(
                "e => e.complete && e.naturalWidth > 0", arg=image.element_handle(), timeout=30_000
            )
            assert page.get_by_role("dialog").count() == 0
            assert page.get_by_text("[Show Markdown]").count() == 0
            image.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "asset_chart.png"), full_page=True)
        finally:
            browser.close()


def test_launchpad_defaults_and_a_launched_run_follow_the_active_profile(webserver: str) -> None:
    selector = (
        '{repositoryLocationName: "llmstack", repositoryName: "__repository__", '
        'pipelineName: "__ASSET_JOB", assetSelection: [{path: ["tokenizer"]}]}'
    )
    schema = _graphql(webserver, f"""{{
      runConfigSchemaOrError(selector: {selector}) {{
        __typename ... on RunConfigSchema {{ rootDefaultYaml }}
      }}
    }}""")["data"]["runConfigSchemaOrError"]  # fmt: skip
    assert schema["__typename"] == "RunConfigSchema", schema
    default_yaml = schema["rootDefaultYaml"]
    assert "vocab_size: 4096" in default_yaml  # the demo profile, not the 32k real-run size
    launched = _graphql(webserver, """mutation($params: ExecutionParams!) {
      launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId runConfigYaml tags { key value } } }
        ... on PythonError { message }
      }
    }""", variables={
        "params": {
            "selector": {"repositoryLocationName": "llmstack", "repositoryName": "__repository__",
                         "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["tokenizer"]}]},
            "runConfigData": default_yaml,
        }
    })["data"]["launchRun"]  # fmt: skip
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert "vocab_size: 4096" in launched["run"]["runConfigYaml"]
    tags = {t["key"]: t["value"] for t in launched["run"]["tags"]}
    assert tags["llmstack/profile"] == "demo"  # added by the project's run coordinator
