"""Attribute buckets: domain x quality class, optionally x toxicity band x domain category.

Each attribute is fine-grained (one bucket per value) or grouped (``groups`` merges values;
values in no group become ``other``); a missing column or null value is ``unknown``. A
bucket's weight is the product of its labels' weights (default 1) and tilts its share inside
its source, so the same sampler serves every bucketing. Quality classes and toxicity come from
quality scoring; the 26 categories are NVIDIA's domain-classifier labels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

UNKNOWN = "unknown"
OTHER = "other"


class CategoricalAttribute(BaseModel):
    enabled: bool = True
    column: str
    groups: dict[str, list[str]] | None = Field(
        None, description="grouped mode: group label -> member values; None = fine-grained"
    )
    weights: dict[str, float] = Field(default_factory=dict, description="label -> weight")

    def labels(self, table: pa.Table) -> list[str]:
        if self.column not in table.column_names:
            return [UNKNOWN] * table.num_rows
        values = pc.cast(table.column(self.column), pa.string()).to_pylist()
        if self.groups is None:
            return [UNKNOWN if v is None else v for v in values]
        group_of = {member: group for group, members in self.groups.items() for member in members}
        return [UNKNOWN if v is None else group_of.get(v, OTHER) for v in values]


class BandedAttribute(BaseModel):
    """A score in [0, 1] cut into bands at ``edges``: labels ``<a``, ``a-b``, ``>=b``."""

    enabled: bool = False
    column: str = "toxicity"
    edges: list[float] = Field(default_factory=lambda: [0.1, 0.5])
    weights: dict[str, float] = Field(default_factory=dict, description="band label -> weight")

    def band_names(self) -> list[str]:
        edges = self.edges
        middle = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:], strict=False)]
        return [f"<{edges[0]:g}", *middle, f">={edges[-1]:g}"]

    def labels(self, table: pa.Table) -> list[str]:
        if self.column not in table.column_names:
            return [UNKNOWN] * table.num_rows
        scores = pc.cast(table.column(self.column), pa.float64()).to_numpy(zero_copy_only=False)
        names = np.array(self.band_names() + [UNKNOWN], dtype=object)
        index = np.digitize(scores, self.edges)
        index[np.isnan(scores)] = len(names) - 1
        return names[index].tolist()


class AttributeBucketConfig(BaseModel):
    quality: CategoricalAttribute = Field(
        default_factory=lambda: CategoricalAttribute(column="quality_label")
    )
    toxicity: BandedAttribute = Field(default_factory=BandedAttribute)
    category: CategoricalAttribute = Field(
        default_factory=lambda: CategoricalAttribute(enabled=False, column="domain_label")
    )

    def active(self) -> Iterator[tuple[str, CategoricalAttribute | BandedAttribute]]:
        for name in ("quality", "toxicity", "category"):
            attribute = getattr(self, name)
            if attribute.enabled:
                yield name, attribute

    def label_columns(self, table: pa.Table) -> dict[str, list[str]]:
        """Per active attribute, the label of every row."""
        return {name: attribute.labels(table) for name, attribute in self.active()}

    def weight(self, labels: dict[str, str]) -> float:
        """Product of the configured weights of a bucket's labels."""
        weight = 1.0
        for name, attribute in self.active():
            weight *= attribute.weights.get(labels.get(name, UNKNOWN), 1.0)
        return weight
