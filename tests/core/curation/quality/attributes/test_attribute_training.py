"""Loading the stored attribute classifiers (training is covered by the session reference LM
in conftest.py and test_attributes_real_data.py)."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from llmstack_dagster.core.curation.quality.attributes.training import (
    load_trained_attributes,
)


def test_a_model_from_before_this_version_is_refused() -> None:
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(np.eye(2), [0, 1]), buffer)
    with pytest.raises(ValueError, match="rematerialize reference_lm"):
        load_trained_attributes(buffer.getvalue())
