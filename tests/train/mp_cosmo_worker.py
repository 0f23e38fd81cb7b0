"""Worker of tests/train/test_multiprocess.py for COSMO, run by torchrun with 2 processes (not a test module).

argv: LM_DIR OUT_DIR. Trains the cosmo objective for 3 steps with accelerate (gloo, 2 ranks); rank 0 writes the
trained weights (OUT_DIR/mp_weights.safetensors) and, on the final model, the cosmo loss and gradients with
gathered negatives and the global token count (mean over ranks) beside the single-process loss and gradients on
the same global batch (OUT_DIR/mp_result.json). The test compares the weights and the log with a one-process run.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.conftest import make_corpus  # noqa: E402
from tests.train.test_cosmo_train import cosmo_config  # noqa: E402
from vidlang.data.longvideo import split_train_heldout  # noqa: E402
from vidlang.train.dist import Gatherer  # noqa: E402
from vidlang.train.objectives import OBJECTIVES  # noqa: E402
from vidlang.train.trainer import train  # noqa: E402


class Single:  # the single-process gather (identity), rank 0 of 1
    rank, world = 0, 1

    def __call__(self, x):
        return x


def main() -> None:
    from safetensors.torch import save_file

    lm_dir, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    corpus = make_corpus()
    cfg = cosmo_config(lm_dir, train__steps=3)
    holder = {}
    summary = train(cfg, out, data=corpus, callbacks=[lambda s, r, m: holder.update(model=m)])
    model = holder["model"]
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {"world_size": world, "summary_world": summary["world_size"]}
    if rank == 0:
        save_file({k: v.contiguous() for k, v in model.saved_state().items()}, str(out / "mp_weights.safetensors"))

    model.eval()
    train_ids, _ = split_train_heldout(corpus.train_ids, cfg.data.heldout_frac, cfg.data.heldout_seed)
    ds = model.dataset(corpus.features, corpus.captions, train_ids, cfg.data, corpus.fps, 0)
    order, collate = ds.epoch_order(5), model.collate_fn()
    local, whole = collate(*ds.batch_samples(order, 5, 0, rank, world)), collate(*ds.batch_samples(order, 5, 0))
    trainable = [p for p in model.parameters() if p.requires_grad]
    objective = OBJECTIVES.get("cosmo")

    model.zero_grad()
    losses = objective(model, local, Gatherer(), cfg.loss)
    losses["total"].backward()
    grads = torch.cat([p.grad.flatten() for p in trainable])
    dist.all_reduce(grads)
    grads /= world  # DDP's averaging
    mean = torch.stack([losses[k].detach() for k in ("total", "lm", "contrastive")])
    dist.all_reduce(mean)
    mean /= world
    model.zero_grad()
    ref = objective(model, whole, Single(), cfg.loss)
    ref["total"].backward()
    ref_grads = torch.cat([p.grad.flatten() for p in trainable])
    result.update({"dist": mean.tolist(), "single": [float(ref[k].detach()) for k in ("total", "lm", "contrastive")],
                   "max_grad_diff": float((grads - ref_grads).abs().max()), "grad_norm": float(ref_grads.norm()),
                   "local_tokens": int((local.attention_mask.sum())), "global_tokens": int(whole.attention_mask.sum())})
    if rank == 0:
        (out / "mp_result.json").write_text(json.dumps(result))
    dist.barrier()


if __name__ == "__main__":
    main()
