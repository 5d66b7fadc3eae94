"""Output head and mean cross-entropy in one pass, without keeping full-vocabulary logits.

``linear_cross_entropy(hidden, weight, targets)`` equals
``F.cross_entropy(hidden @ weight.T, targets)``. Tokens are processed in chunks: each chunk's
logits are made, turned into the softmax in place, and immediately reduced to the gradients of
``hidden`` and ``weight`` (``d loss / d logits = (softmax - onehot) / N``). Backward only scales
those by the incoming gradient. This saves the separate log-softmax, its backward and the
``N x V`` logits and gradient buffers that autograd would otherwise keep.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 128


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
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
                logits = (h @ w.T).to(acc)
                lse = torch.logsumexp(logits, dim=-1)
                total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                probs = logits.sub_(lse[:, None]).exp_()
                probs.scatter_add_(1, t[:, None], probs.new_full((t.shape[0], 1), -1.0))
                probs = probs.mul_(1.0 / n).to(w.dtype)
                torch.mm(probs, w, out=grad_hidden[start : start + chunk])
                if grad_weight.dtype == w.dtype:
                    grad_weight.addmm_(probs.T, h)
                else:
                    grad_weight += (probs.T @ h).to(grad_weight.dtype)
        ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight)
        return total / n

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden (N, d) @ weight (V, d).T`` against ``targets (N,)``.

    Targets must be valid class indices (no ``ignore_index``). Gradients are computed in the
    forward pass, so call it only when the loss will be back-propagated.
    """
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk)
