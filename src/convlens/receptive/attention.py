"""Attention in the surrogate pass: equal weights over the keys not masked out, with a positive
derivative to every allowed logit (`softmax`), the values averaged under them
(`scaled_dot_product_attention`, `multi_head_attention_forward`); attention over every token of
the image's grid is a global context, its output detached."""
from __future__ import annotations

import torch

from .marks import dead

MASKED = 50.0  # a logit this far below its row's largest is masked out (-inf, -100, -1e4)


def uniform(allowed: torch.Tensor, dtype) -> torch.Tensor:
    a = allowed.to(dtype)
    return a / a.sum(-1, keepdim=True).clamp_min(1)


def softmax(mode, func, args, kwargs, ins):
    x = args[0] if args else kwargs["input"]
    dim = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("dim", -1)
    if dim is None or not x.is_floating_point():
        return None
    dim = int(dim) % x.dim()
    xt = x.transpose(dim, -1)
    allowed = xt >= xt.amax(-1, keepdim=True) - MASKED
    weights = uniform(allowed, x.dtype)
    if (x.dim() in (3, 4) and dim == x.dim() - 1 and x.shape[0] == mode.batch
            and x.shape[-1] == x.shape[-2] and mode.tokens(x.shape[-1])):
        out = dead(weights.transpose(dim, -1).contiguous())
        out._cl_attn = True  # global attention: what it mixes is a global context
        return out, True
    a = allowed.to(x.dtype)
    d = xt - xt.detach()
    through = a * (d + (d * a).sum(-1, keepdim=True) / a.sum(-1, keepdim=True).clamp_min(1))
    return (weights + through).transpose(dim, -1), False


def attend(q, k, v, allowed, mode, is_global):
    """Equal weights over the allowed keys (``allowed`` broadcast to ``(..., L, S)``), with a
    positive derivative to the queries and the allowed keys; detached if global."""
    w = uniform(allowed, v.dtype)
    out = w @ v
    if is_global:
        return dead(out.detach()), True
    dq = (q - q.detach()).sum(-1, keepdim=True)
    dk = w @ (k - k.detach()).sum(-1, keepdim=True)
    return out + dq + dk, False


def sdpa(mode, func, args, kwargs, ins):
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    a = dict(zip(names, args))
    a.update(kwargs)
    q, k, v = a["query"], a["key"], a["value"]
    if a.get("enable_gqa") or q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        return None
    L, S = q.shape[-2], k.shape[-2]
    allowed = torch.ones(L, S, dtype=torch.bool, device=q.device)
    if a.get("is_causal"):
        allowed = allowed.tril()
    m = a.get("attn_mask")
    if m is not None:
        allowed = allowed & (m if m.dtype == torch.bool else m > -MASKED)
    is_global = (q.shape[0] == mode.batch and q.dim() in (3, 4) and mode.tokens(S)
                 and bool(allowed.all()))
    return attend(q, k, v, allowed, mode, is_global)


def mha(mode, func, args, kwargs, ins):
    names = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight",
             "in_proj_bias", "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight",
             "out_proj_bias", "training", "key_padding_mask", "need_weights", "attn_mask")
    a = dict(zip(names, args))
    a.update(kwargs)
    q, k, v = a["query"], a["key"], a["value"]
    if q.dim() != 3 or a.get("bias_k") is not None or a.get("add_zero_attn"):
        return None
    L, n, _ = q.shape
    S = k.shape[0]
    allowed = torch.ones(n, L, S, dtype=torch.bool, device=q.device)
    if a.get("is_causal"):
        allowed = allowed & torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
    m = a.get("attn_mask")
    if m is not None:
        m = ~m if m.dtype == torch.bool else m > -MASKED
        allowed = allowed & (m if m.dim() == 2 else m.reshape(n, -1, L, S).all(1))
    kp = a.get("key_padding_mask")
    if kp is not None:
        kp = ~kp if kp.dtype == torch.bool else kp > -MASKED
        allowed = allowed & kp[:, None, :]
    is_global = n == mode.batch and mode.tokens(S) and bool(allowed.all())
    vb = v.mean(-1).t().unsqueeze(-1)  # (N, S, 1)
    qb, kb = q.mean(-1).t().unsqueeze(-1), k.mean(-1).t().unsqueeze(-1)
    out, whole = attend(qb, kb, vb, allowed, mode, is_global)   # (N, L, 1)
    e = a["out_proj_weight"].shape[0]
    out = out.squeeze(-1).t().unsqueeze(-1).expand(L, n, e).contiguous()
    if whole:
        dead(out)
    weights = uniform(allowed, q.dtype) if a.get("need_weights", True) else None
    return (out, weights), whole
