"""Worker of tests/train/test_multiprocess.py, run by torchrun with 2 processes (not a test module itself).

argv: TEXT_MODEL_DIR OUT_DIR. Trains 3 infonce steps with accelerate (gloo, 2 ranks), then checks on the final
model that (a) both ranks hold identical weights and (b) the loss with differentiable all-gathered negatives,
averaged over ranks, equals the single-process loss on the same global batch, and so do the gradients; (b) is
checked for the infonce and the norton objectives (norton: global clip negatives, rectification plan, paragraph
negatives and bucket quantile).
Rank 0 writes OUT_DIR/mp_result.json.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.conftest import make_corpus, tiny_config  # noqa: E402
from vidlang.data.longvideo import split_train_heldout  # noqa: E402
from vidlang.train.dist import Gatherer  # noqa: E402
from vidlang.train.objectives import OBJECTIVES  # noqa: E402
from vidlang.train.trainer import train  # noqa: E402


def main() -> None:
    text_dir, out = sys.argv[1], Path(sys.argv[2])
    corpus = make_corpus()
    cfg = tiny_config(text_dir, "infonce", train__steps=3)
    holder = {}
    summary = train(cfg, out, data=corpus, callbacks=[lambda s, r, m: holder.update(model=m)])
    model = holder["model"]
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {"world_size": world, "summary_world": summary["world_size"]}

    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    parts = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(parts, flat)
    result["max_weight_diff"] = float((parts[0] - parts[1]).abs().max())
    result["n_params"] = flat.numel()

    # Same global batch, split over the 2 ranks vs whole in one process; eval mode: no dropout.
    model.eval()
    train_ids, _ = split_train_heldout(corpus.train_ids, cfg.data.heldout_frac, cfg.data.heldout_seed)
    ds = model.dataset(corpus.features, corpus.captions, train_ids, cfg.data, corpus.fps, 0)
    order = ds.epoch_order(5)
    trainable = [p for p in model.parameters() if p.requires_grad]
    collate = model.collate_fn()
    local = collate(*ds.batch_samples(order, 5, 0, rank, world))
    whole = collate(*ds.batch_samples(order, 5, 0, 0, 1))

    class Single:  # the single-process gather (identity), rank 0
        rank = 0

        def __call__(self, x):
            return x

    for name, prefix in (("infonce", ""), ("norton", "norton_")):
        model.zero_grad()
        loss_cfg = tiny_config(text_dir, name).loss
        loss = OBJECTIVES.get(name)(model, local, Gatherer(), loss_cfg)["total"]
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in trainable])
        dist.all_reduce(grads)
        grads /= world  # DDP's averaging
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world

        model.zero_grad()
        ref = OBJECTIVES.get(name)(model, whole, Single(), loss_cfg)["total"]
        ref.backward()
        ref_grads = torch.cat([p.grad.flatten() for p in trainable])
        result.update({f"{prefix}dist_loss": float(mean_loss), f"{prefix}single_loss": float(ref.detach()),
                       f"{prefix}max_grad_diff": float((grads - ref_grads).abs().max()),
                       f"{prefix}grad_norm": float(ref_grads.norm())})
    result.update(local_rows=int(local.video.shape[0]), global_rows=int(whole.video.shape[0]))
    if rank == 0:
        (out / "mp_result.json").write_text(json.dumps(result))
    dist.barrier()


if __name__ == "__main__":
    main()
