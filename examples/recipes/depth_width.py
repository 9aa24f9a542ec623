"""Depth x width (2D Matryoshka): one network whose truncated depth AND truncated width both give usable embeddings.

    python examples/recipes/depth_width.py           # Fashion-MNIST, a few minutes on a CPU

A 3-stage residual CNN with an exit after every stage: the exit pools the stage's features and maps them to a 64-dim
embedding read by a Matryoshka head (prefixes 8..64). The loss sums the Matryoshka loss over all exits, so running only
the first L stages (less compute) and keeping only the first m dims (less memory) both stay usable. Prints accuracy
over (stages, dims) with the compute of each depth.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _common import fashion_mnist, recipe_args, save_results, train_loop
from torch import nn

from matryoshka import MatryoshkaLoss, MRLHead, nesting_list
from matryoshka.evaluate import accuracy
from matryoshka.nn.backbones import BasicBlock

args = recipe_args(__doc__, "depth_width", embed_dim=64, width=16)
data = fashion_mnist(args.quick, args.seed)
epochs = 1 if args.quick else args.epochs
d, w, nesting = args.embed_dim, args.width, nesting_list(args.embed_dim, 8)


class EarlyExitEncoder(nn.Module):
    """Stages of residual blocks; ``forward(x, depth)`` returns the embedding of every exit up to ``depth``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        channels = [(w, w, 1), (w, 2 * w, 2), (2 * w, 4 * w, 2)]
        self.stages = nn.ModuleList(BasicBlock(c_in, c_out, stride) for c_in, c_out, stride in channels)
        self.exits = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_out, d)) for _, c_out, _ in channels
        )

    def forward(self, x: torch.Tensor, depth: int = 3) -> list[torch.Tensor]:
        h, out = self.stem(x), []
        for stage, exit_ in list(zip(self.stages, self.exits, strict=True))[:depth]:
            h = stage(h)
            out.append(exit_(h))
        return out


encoder = EarlyExitEncoder()
heads = nn.ModuleList(MRLHead(d, 10, nesting) for _ in range(3))
loss_fn = MatryoshkaLoss(nn.CrossEntropyLoss(), nesting)
x, y = data.train.x, data.train.y


def batch_loss(idx):
    return sum(loss_fn(head(z), y[idx]) for head, z in zip(heads, encoder(x[idx]), strict=True))


seconds = train_loop([encoder, heads], batch_loss, len(y), epochs, 128, 3e-3, "depth x width")
table, flops = {}, {}
with torch.no_grad():
    exits = [torch.cat(parts) for parts in zip(*(encoder(b) for b in data.test.x.split(1000)), strict=True)]
    for depth, (head, z) in enumerate(zip(heads, exits, strict=True), start=1):
        table[str(depth)] = {str(m): accuracy(out, data.test.y) for m, out in zip(nesting, head(z), strict=True)}
# Multiply-adds of the convolutions up to each depth, for one 28x28 image (stem + blocks).
per_stage = [
    28 * 28 * 9 * w * w * 2,
    14 * 14 * 9 * (w * 2 * w + 2 * w * 2 * w),
    7 * 7 * 9 * (2 * w * 4 * w + 16 * w * w),
]
stem = 28 * 28 * 9 * w
for depth in (1, 2, 3):
    flops[str(depth)] = stem + sum(per_stage[:depth])

print("test accuracy (%) over (stages run, embedding dims)")
print(f"  {'stages':<8}{'MMACs':>7}" + "".join(f"{m:>8}" for m in nesting))
for depth in ("1", "2", "3"):
    cells = "".join(f"{100 * table[depth][str(m)]:>8.2f}" for m in nesting)
    print(f"  {depth:<8}{flops[depth] / 1e6:>7.2f}{cells}")
fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
grid = [[100 * table[str(dep)][str(m)] for m in nesting] for dep in (1, 2, 3)]
image = ax.imshow(grid, cmap="viridis", aspect="auto")
for i in range(3):
    for j in range(len(nesting)):
        ax.text(j, i, f"{grid[i][j]:.1f}", ha="center", va="center", color="white", fontsize=8)
ax.set_xticks(range(len(nesting)), [str(m) for m in nesting])
ax.set_yticks(range(3), [f"{dep} stage(s)" for dep in (1, 2, 3)])
ax.set_xlabel("embedding dims")
ax.set_title("accuracy (%): truncated depth x truncated width")
fig.colorbar(image)
fig.tight_layout()
fig.savefig(args.out / "depth_width.png")
save_results(args.out, {"nesting": nesting, "accuracy": table, "conv_macs": flops, "train_seconds": seconds})
