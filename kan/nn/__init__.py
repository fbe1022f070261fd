"""Transformer modules with KAN feed-forward blocks: attention, feed-forward of any layer kind,
the pre-norm block, ViT / KAT (Yang & Wang 2024) and a decoder-only GPT.

All modules map ``(..., seq, width)`` (any leading batch shape), use float32 parameters and compute
in the dtype of their input (so a bf16 train step casts the parameters, not the code).
"""

from .attention import ATTENTION_KINDS, MultiHeadAttention, causal_mask, make_attention
from .karat import KolmogorovArnoldAttention
from .karat_rows import ROW_NORMALISATIONS, sparsemax
from .block import TransformerBlock
from .experts import ROUTERS, MixtureOfExperts, switch_balance_loss
from .feedforward import BLOCK_FFN_KINDS
from .feedforward import FF_KINDS, FeedForward, hidden_width, make_feed_forward
from .gpt import GPT, sample
from .layers import LayerNorm, Linear, activation_second_moment
from .vit import VIT_CONFIGS, VisionTransformer, patchify, vision_transformer, vit_config

__all__ = [
    "ATTENTION_KINDS",
    "FF_KINDS",
    "BLOCK_FFN_KINDS",
    "MixtureOfExperts",
    "ROUTERS",
    "switch_balance_loss",
    "FeedForward",
    "GPT",
    "LayerNorm",
    "Linear",
    "KolmogorovArnoldAttention",
    "MultiHeadAttention",
    "ROW_NORMALISATIONS",
    "sparsemax",
    "TransformerBlock",
    "VIT_CONFIGS",
    "VisionTransformer",
    "activation_second_moment",
    "causal_mask",
    "hidden_width",
    "make_attention",
    "make_feed_forward",
    "patchify",
    "sample",
    "vision_transformer",
    "vit_config",
]
