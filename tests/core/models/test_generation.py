import pytest
import torch

from llmstack_dagster.core.models.config import ModelConfig
from llmstack_dagster.core.models.generation import generate_batch, next_tokens
from llmstack_dagster.core.models.kv_cache import KVCache
from llmstack_dagster.core.models.llama import LlamaLM

# large init so an untrained model's greedy answers vary instead of repeating one token
CFG = ModelConfig(
    vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64,
    max_seq_len=48, init_std=0.5,
)  # fmt: skip
PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [11], [3, 1, 4, 1, 5]]


@pytest.fixture(scope="module")
def model() -> LlamaLM:
    torch.manual_seed(0)
    return LlamaLM(CFG).eval()


def uncached_greedy(model: LlamaLM, prompt: list[int], new: int, stop: int = -1) -> list[int]:
    """The reference: the whole sequence through ``forward`` at every step."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(new):
            token = int(model(torch.tensor([ids]))[0, -1].argmax())
            if token == stop:
                break
            ids.append(token)
            out.append(token)
    return out


def test_cached_logits_equal_full_forward_for_left_padded_rows(model) -> None:
    width, steps = max(map(len, PROMPTS)), 4
    pads = [width - len(p) for p in PROMPTS]
    idx = torch.tensor([[0] * pad + p for pad, p in zip(pads, PROMPTS, strict=True)])
    offsets = torch.arange(width)[None, :] - torch.tensor(pads)[:, None]
    cache = KVCache.for_prompts(CFG.n_layers, offsets >= 0, width + steps)
    follow = torch.randint(
        0, CFG.vocab_size, (len(PROMPTS), steps), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        got = [model.decode(idx, offsets.clamp(min=0), cache)]
        for step in range(steps):
            position = torch.tensor([len(p) + step for p in PROMPTS])[:, None]
            got.append(model.decode(follow[:, step : step + 1], position, cache))
        for row, prompt in enumerate(PROMPTS):
            full = model(torch.tensor([prompt + follow[row].tolist()]))[0]
            expected = full[len(prompt) - 1 :]
            torch.testing.assert_close(
                torch.stack([g[row] for g in got]), expected, atol=1e-5, rtol=1e-5
            )


def test_greedy_equals_uncached_decoding_whatever_the_batch(model) -> None:
    expected = [uncached_greedy(model, p, 12) for p in PROMPTS]
    assert len({tuple(e) for e in expected}) == len(PROMPTS)  # answers differ: a real check
    for batch_size in (1, 2, 4):
        assert generate_batch(model, PROMPTS, 12, batch_size=batch_size) == expected


def test_a_stop_id_ends_its_row_only_and_is_not_returned(model) -> None:
    full = [uncached_greedy(model, p, 12) for p in PROMPTS]
    stop = full[1][3]
    out = generate_batch(model, PROMPTS, 12, stop_ids={stop})
    for prompt, answer, whole in zip(PROMPTS, out, full, strict=True):
        cut = whole.index(stop) if stop in whole else len(whole)
        assert answer == whole[:cut] == uncached_greedy(model, prompt, 12, stop)
    assert len(out[1]) == 3


def test_sampling_is_seeded_per_prompt_not_per_batch(model) -> None:
    kwargs = {"temperature": 1.0, "top_p": 0.95}
    seeds = [10, 11, 12, 13]
    together = generate_batch(model, PROMPTS, 10, seeds=seeds, batch_size=4, **kwargs)
    alone = [
        generate_batch(model, [p], 10, seeds=[s], **kwargs)[0]
        for p, s in zip(PROMPTS, seeds, strict=True)
    ]
    assert together == alone
    assert together == generate_batch(model, PROMPTS, 10, seeds=seeds, batch_size=4, **kwargs)
    other = generate_batch(model, PROMPTS, 10, seeds=[20, 21, 22, 23], **kwargs)
    assert other != together
    greedy = generate_batch(model, PROMPTS, 10)
    assert generate_batch(model, PROMPTS, 10, seeds=seeds, temperature=1.0, top_p=1e-6) == greedy


def test_nucleus_keeps_the_smallest_set_reaching_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gens = [torch.Generator().manual_seed(s) for s in range(200)]
    draws = {int(next_tokens(logits, 1.0, 0.8, [g])[0]) for g in gens}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.8; tokens 2 and 3 are never drawn
    assert int(next_tokens(logits, 0.0, 0.8, gens[:1])[0]) == 0


def test_long_prompts_keep_their_last_tokens(model) -> None:
    long = list(range(1, 90))  # longer than the 48-token window
    (answer,) = generate_batch(model, [long], 8)
    assert answer == uncached_greedy(model, long[-(CFG.max_seq_len - 8) :], 8)
    assert generate_batch(model, [], 8) == [] and generate_batch(model, [[1]], 0) == [[]]
