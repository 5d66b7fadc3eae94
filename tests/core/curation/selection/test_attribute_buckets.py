import pyarrow as pa

from llmstack_dagster.core.curation.selection.attribute_buckets import (
    AttributeBucketConfig,
    BandedAttribute,
    CategoricalAttribute,
)

TABLE = pa.table(
    {
        "quality_class": ["high", "low", None, "medium"],
        "toxicity": [0.05, 0.3, 0.9, None],
        "domain_category": ["News", "Science", "Games", "Sports"],
    }
)


def test_fine_grained_and_grouped_labels():
    fine = CategoricalAttribute(column="domain_category")
    assert fine.labels(TABLE) == ["News", "Science", "Games", "Sports"]
    grouped = CategoricalAttribute(
        column="domain_category", groups={"knowledge": ["News", "Science"]}
    )
    assert grouped.labels(TABLE) == ["knowledge", "knowledge", "other", "other"]
    assert CategoricalAttribute(column="quality_class").labels(TABLE)[2] == "unknown"


def test_toxicity_bands():
    bands = BandedAttribute(enabled=True)
    assert bands.band_names() == ["<0.1", "0.1-0.5", ">=0.5"]
    assert bands.labels(TABLE) == ["<0.1", "0.1-0.5", ">=0.5", "unknown"]


def test_missing_columns_are_unknown_and_weights_multiply():
    config = AttributeBucketConfig(
        quality=CategoricalAttribute(column="quality_class", weights={"high": 2.0}),
        toxicity=BandedAttribute(enabled=True, weights={">=0.5": 0.25}),
    )
    labels = config.label_columns(pa.table({"text": ["a", "b"]}))
    assert labels == {"quality": ["unknown"] * 2, "toxicity": ["unknown"] * 2}
    assert config.weight({"quality": "high", "toxicity": ">=0.5"}) == 0.5
    assert config.weight({"quality": "low", "toxicity": "<0.1"}) == 1.0
