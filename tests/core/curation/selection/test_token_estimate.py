import pyarrow as pa

from llmstack_dagster.core.curation.selection.token_estimate import (
    TokenEstimatorConfig,
    estimate_tokens,
)

TEXTS = pa.array(["abcdefgh", "héllo wörld again", "x"])


def test_bytes_over_four_rounds_up_and_counts_utf8_bytes():
    config = TokenEstimatorConfig()
    # 8 bytes -> 2; 19 bytes (é, ö are 2 bytes) -> ceil(4.75) = 5; 1 byte -> 1
    assert estimate_tokens(TEXTS, config).tolist() == [2, 5, 1]
    assert config.describe() == "utf8_bytes/4"


def test_words_times_one_point_three():
    config = TokenEstimatorConfig(method="words")
    # 1 word -> ceil(1.3) = 2; 3 words -> ceil(3.9) = 4; 1 -> 2
    assert estimate_tokens(TEXTS, config).tolist() == [2, 4, 2]


def test_real_tokenizer_hook():
    def char_count(texts: list[str]) -> list[int]:
        return [len(t) for t in texts]

    config = TokenEstimatorConfig()
    assert estimate_tokens(TEXTS, config, char_count).tolist() == [8, 17, 1]
    assert config.describe(char_count) == "tokenizer:char_count"
