from datetime import UTC, datetime

import numpy as np
import pytest

from llmstack_dagster.core.curation.selection.temporal import TemporalConfig, to_micros

DATES = [datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1)]
CREATED = np.array([to_micros(d) for d in DATES])


def test_window_is_half_open():
    config = TemporalConfig(created_after=DATES[1], created_before=DATES[2])
    assert config.in_window(CREATED).tolist() == [False, True, False]


def test_exponential_half_life_from_newest_document():
    config = TemporalConfig(half_life_days=365.0)
    weights = config.recency_weights(CREATED, np.ones(3, dtype=bool))
    # ages 731 and 365 days (2020 is a leap year)
    assert weights == pytest.approx([0.5 ** (731 / 365), 0.5, 1.0])


def test_reference_date_and_no_half_life():
    config = TemporalConfig(half_life_days=365.0, reference_date=datetime(2021, 1, 1))
    weights = config.recency_weights(CREATED, np.ones(3, dtype=bool))
    assert weights == pytest.approx([0.5 ** (366 / 365), 1.0, 1.0])
    assert TemporalConfig().recency_weights(CREATED, np.ones(3, dtype=bool)).tolist() == [1] * 3
