"""Output head and cross-entropy in one pass, without keeping full-vocabulary logits.

``linear_cross_entropy(hidden, weight, targets, reduction=r)`` equals
``F.cross_entropy(hidden @ weight.T, targets, reduction=r)`` for ``r`` "mean" (every target
valid) or "sum" (targets of ``IGNORE_INDEX`` count zero: masked SFT losses). Tokens are
processed in chunks: each chunk's logits are made, turned into the softmax in place, and
immediately reduced to the gradients of ``hidden`` and ``weight`` (``d loss / d logits =
(softmax - onehot) / N``; for the sum without the ``1 / N`` and zero on ignored tokens).
Backward only scales those by the incoming gradient. This saves the separate log-softmax, its
backward and the ``N x V`` logits and gradient buffers that autograd would otherwise keep.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 128
IGNORE_INDEX = -100


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        summed: bool,
    ) -> torch.Tensor:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        with torch.autocast(device, enabled=False):
            h_all = hidden if dtype is None else hidden.to(dtype)
            w = weight if dtype is None else weight.to(dtype)
            n = h_all.shape[0]
            grad_hidden = torch.empty_like(h_all)
            grad_weight = torch.zeros_like(weight)
            acc = torch.promote_types(w.dtype, torch.float32)
            total = torch.zeros((), dtype=acc, device=hidden.device)
            for start in range(0, n, chunk):
                h, t = h_all[start : start + chunk], targets[start : start + chunk]
                keep = t != IGNORE_INDEX if summed else None
                if keep is not None:
                    t = t.where(keep, 0)
                logits = (h @ w.T).to(acc)
                lse = torch.logsumexp(logits, dim=-1)
                nll = lse - logits.gather(1, t[:, None]).squeeze(1)
                total += (nll if keep is None else nll.where(keep, 0.0)).sum()
                probs = logits.sub_(lse[:, None]).exp_()
                probs.scatter_add_(1, t[:, None], probs.new_full((t.shape[0], 1), -1.0))
                if keep is None:
                    probs = probs.mul_(1.0 / n)
                else:
                    probs = probs.masked_fill_(~keep[:, None], 0.0)
                probs = probs.to(w.dtype)
                torch.mm(probs, w, out=grad_hidden[start : start + chunk])
                if grad_weight.dtype == w.dtype:
                    grad_weight.addmm_(probs.T, h)
                else:
                    grad_weight += (probs.T @ h).to(grad_weight.dtype)
        ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight)
        return total if summed else total / n

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk: int = DEFAULT_CHUNK,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``hidden (N, d) @ weight (V, d).T`` against ``targets (N,)``.

    "mean": targets must be valid class indices. "sum": over the targets other than
    ``IGNORE_INDEX`` (0 when there are none). Gradients are computed in the forward pass, so
    call it only when the loss will be back-propagated.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r} is not 'mean' or 'sum'")
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, reduction == "sum")
