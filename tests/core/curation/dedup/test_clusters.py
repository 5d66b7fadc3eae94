from llmstack_dagster.core.curation.dedup.clusters import _size_bin


def _bounds(label: str) -> tuple[int, int]:
    low, _, high = label.partition("-")
    return int(low), int(high or low)


def test_size_bins_do_not_overlap_and_contain_their_sizes() -> None:
    labels = {size: _size_bin(size) for size in range(2, 300)}
    first = [labels[s] for s in (2, 3, 4, 7, 8, 15, 16)]
    assert first == ["2", "3", "4-7", "4-7", "8-15", "8-15", "16-31"]
    ranges = sorted({_bounds(label) for label in labels.values()})
    for size, label in labels.items():
        low, high = _bounds(label)
        assert low <= size <= high
    for (_, high), (low, _) in zip(ranges[:-1], ranges[1:], strict=True):
        assert high < low
