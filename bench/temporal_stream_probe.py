"""Train `twostream_video`'s temporal stream alone on a `twostream` store: does its flow path
learn the demo fakes when the ResNet-50 is out of the way? Its own modules (the flow conv net,
the flattened linear 128, the 16 stacked to linear 512) and a linear score; the model's loss,
Adam, batches of 4 videos, seed 0. A few seconds an epoch on one CPU thread.

    python -m bench.temporal_stream_probe stores/demo-twostream.zarr --lr 1e-4 --epochs 60
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from trainer.dataset import open_split
from trainer.losses import bce_soft_f1
from trainer.metrics import Scores, auc_or_nan
from trainer.models.video import PER_VIDEO, TwoStreamVideo
from trainer.registry import get_variant

BATCH = 4


def scale(flow: torch.Tensor, how: str, train_std: float) -> torch.Tensor:
    """Flow (B, L, 2, H, W) as the stream reads it: raw pixels, divided by the train split's
    std, or standardised per sample and channel."""
    if how == "fixed":
        return flow / train_std
    if how == "sample":
        return (flow - flow.mean(dim=(1, 3, 4), keepdim=True)) / (flow.std(dim=(1, 3, 4), keepdim=True) + 1e-6)
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--flow-scale", choices=("raw", "fixed", "sample"), default="raw")
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = get_variant("twostream_video").spec
    splits = {}
    for split in ("train", "val", "test"):
        dataset = open_split(args.store, spec, split)
        batch = dataset[list(range(len(dataset)))]
        splits[split] = (batch["flow"].float(), batch["label"], np.asarray(batch["video_id"]))
    train_std = float(splits["train"][0].std())
    model = TwoStreamVideo(spec.clip_length, spec.size)
    stream = nn.ModuleDict({"flow_net": model.flow_net, "flow_stream": model.flow_stream, "head": nn.Linear(PER_VIDEO, 1)})

    def logits(flow: torch.Tensor) -> torch.Tensor:
        flow = scale(flow, args.flow_scale, train_std)
        maps = stream["flow_net"](flow.flatten(0, 1)).view(*flow.shape[:2], -1)
        return stream["head"](stream["flow_stream"](maps)).squeeze(-1)

    optimizer = torch.optim.Adam(stream.parameters(), lr=args.lr)
    ones, generator = torch.ones(2), torch.Generator().manual_seed(0)
    print(f"train flow std {train_std:.2f} px, max |flow| {float(splits['train'][0].abs().max()):.1f} px")
    for epoch in range(1, args.epochs + 1):
        stream.train()
        flow, labels, _ = splits["train"]
        losses = []
        for batch in torch.randperm(len(labels), generator=generator).split(BATCH):
            loss = bce_soft_f1({"logits": logits(flow[batch])}, labels[batch], ones)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        stream.eval()
        line = [f"epoch {epoch}: train loss {np.mean(losses):.3f} (steps {', '.join(f'{x:.2f}' for x in losses)})"]
        with torch.no_grad():
            for split in ("val", "test"):
                flow, labels, videos = splits[split]
                out = logits(flow)
                loss = float(bce_soft_f1({"logits": out}, labels, ones))
                auc = auc_or_nan(Scores(torch.sigmoid(out).numpy().astype(np.float64), labels.numpy(), videos))
                line.append(f"{split} loss {loss:.3f} AUC {auc:.3f}")
        print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
