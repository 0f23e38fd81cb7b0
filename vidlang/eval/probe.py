"""Linear / MLP probes on frozen per-second embeddings (the supervised segmentation head).

The epoch is selected on a held-out part of the TRAINING videos, never on the test split (MMPT/Norton select
checkpoints on test).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidlang.errors import VidlangError
from vidlang.eval.segmentation import segmentation_metrics


def train_head(X: Sequence[Tensor], Y: Sequence[np.ndarray], Xv: Sequence[Tensor], Yv: Sequence[np.ndarray],
               classes: Sequence[int], head: str = "linear", hidden: int = 256, epochs: int = 300,
               lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0, eval_every: int = 10,
               batch_frames: int = 65536):
    """Frame classifier on frozen per-second embeddings; the epoch is chosen on (Xv, Yv) (train-side hold-out).

    Returns (predict_fn: Tensor (T, D) -> (T,) int labels, info dict).
    """
    torch.manual_seed(seed)
    cls = list(classes)
    to_idx = {c: i for i, c in enumerate(cls)}
    x = torch.cat(list(X))
    y = torch.as_tensor(np.concatenate([[to_idx.get(int(l), 0) for l in yy] for yy in Y]), dtype=torch.long)
    d = x.shape[1]
    if head == "linear":
        model = torch.nn.Linear(d, len(cls))
    elif head == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, len(cls)))
    else:
        raise VidlangError(f"segmentation.head: unknown head {head!r} (linear, mlp)")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ids = torch.as_tensor(cls)

    def predict(e: Tensor) -> np.ndarray:
        with torch.no_grad():
            return ids[model(e.float()).argmax(dim=1)].numpy()

    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    for ep in range(1, epochs + 1):
        model.train()
        # full batch when it is small (the synthetic corpus); a random minibatch of frames per step otherwise
        idx = torch.randint(0, x.shape[0], (batch_frames,)) if x.shape[0] > batch_frames else slice(None)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ep % eval_every == 0 or ep == epochs:
            model.eval()
            acc = segmentation_metrics([predict(e) for e in Xv], list(Yv))["frame_accuracy"] if Xv else -ep
            if acc > best[0]:
                best = (acc, ep, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    model.eval()
    return predict, {"selected_epoch": best[1], "val_frame_accuracy": best[0]}


