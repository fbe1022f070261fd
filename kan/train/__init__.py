"""Training at scale: a jitted data-parallel train step (``jax.sharding`` Mesh + ``shard_map``, one or
many devices and hosts), optional bf16 compute with float32 master weights, AdamW with warm-up +
cosine, resumable checkpoints (model + optimiser state + step + data position) and a training loop
with a progress bar.
"""

from .checkpoint import latest_checkpoint, list_checkpoints, restore_checkpoint, save_checkpoint
from .loop import ArrayBatches, TrainResult, WindowBatches, train
from .schedules import decay_mask, make_optimizer, warmup_cosine
from .step import (cast_params, classification_loss, data_mesh, language_model_loss, make_eval_step,
                   make_train_step, partition, replicate, shard_batch, to_host)

__all__ = [
    "ArrayBatches",
    "TrainResult",
    "WindowBatches",
    "cast_params",
    "classification_loss",
    "data_mesh",
    "decay_mask",
    "language_model_loss",
    "latest_checkpoint",
    "list_checkpoints",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "partition",
    "replicate",
    "restore_checkpoint",
    "save_checkpoint",
    "shard_batch",
    "to_host",
    "train",
    "warmup_cosine",
]
