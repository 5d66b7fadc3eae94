"""Quality scoring on Ray actors (models loaded once per actor) writes the local bytes."""

from pathlib import Path

import pytest
from quality_data import halves, web_texts, write_docs

from llmstack_dagster.core.curation.quality.reference_lm import ReferenceLM
from llmstack_dagster.core.curation.quality.scoring import QualityConfig, _score_pass
from llmstack_dagster.core.scale.ray_backend import RayShardMap
from llmstack_dagster.core.scale.shard_map import LocalShardMap
from llmstack_dagster.core.storage import ShardManifest, Storage

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def test_scores_on_ray_actors_equal_local(
    lm_storage: Storage, reference_lm: ReferenceLM, shared_data: Path
) -> None:
    texts = halves(web_texts(shared_data))[1][:45]
    parts = [write_docs(lm_storage, f"ray_in{k}", "web", texts[k::3]) for k in range(3)]
    docs = ShardManifest(asset="ray_in", partition="web",
                         shards=[s for p in parts for s in p.shards])  # fmt: skip
    runs = {
        name: _score_pass(lm_storage, docs, False, reference_lm, QualityConfig(), f"q-{name}",
                          engine, f"q-{name}/.work")  # fmt: skip
        for name, engine in (("local", LocalShardMap()), ("ray", RayShardMap(workers=2)))
    }
    assert [s.rows for s in runs["local"]] == [s.rows for s in docs.shards] == [15, 15, 15]
    local, remote = ([lm_storage.read_bytes(s.path) for s in runs[n]] for n in ("local", "ray"))
    assert local == remote
