"""Multi-task heads on different granularities of one Matryoshka embedding.

    python examples/recipes/multi_task.py            # Fashion-MNIST, 3 epochs per model (a few minutes on a CPU)

One encoder, one summed loss: the coarse task (5 super-classes: tops, trousers, dresses, footwear, bags) is read from
the first 8 dims only, the fine task (10 classes) from every nested prefix 8..64 (a Matryoshka head). Compared with two
single-task models of the same architecture and budget: does sharing one nested embedding cost either task accuracy?
"""

import torch
from _common import fashion_mnist, recipe_args, save_results, train_loop
from torch import nn

from matryoshka import FixedFeatureHead, MatryoshkaLoss, MRLHead, create_backbone, nesting_list
from matryoshka.data import SUPERCLASS
from matryoshka.evaluate import accuracy

args = recipe_args(__doc__, "multi_task", coarse_dim=8, embed_dim=64)
data = fashion_mnist(args.quick, args.seed)
epochs = 1 if args.quick else args.epochs
d, nesting = args.embed_dim, nesting_list(args.embed_dim, 8)
to_coarse = torch.tensor(SUPERCLASS)
x, y, y_coarse = data.train.x, data.train.y, to_coarse[data.train.y]
fine_loss, ce = MatryoshkaLoss(nn.CrossEntropyLoss(), nesting), nn.CrossEntropyLoss()


def model(fine: bool, coarse: bool):
    torch.manual_seed(args.seed)
    encoder = create_backbone("cnn", d, data.input_shape, width=16)
    heads = {}
    if fine:
        heads["fine"] = MRLHead(d, 10, nesting)
    if coarse:
        heads["coarse"] = FixedFeatureHead(d, 5, k=args.coarse_dim)
    return encoder, nn.ModuleDict(heads)


def loss_of(encoder, heads):
    def batch_loss(idx):
        z = encoder(x[idx])
        loss = fine_loss(heads["fine"](z), y[idx]) if "fine" in heads else 0.0
        if "coarse" in heads:
            loss = loss + ce(heads["coarse"](z)[0], y_coarse[idx])
        return loss

    return batch_loss


results = {"coarse_dim": args.coarse_dim, "nesting": nesting, "epochs": epochs, "models": {}}
for name, fine, coarse in (("multi-task", True, True), ("fine only", True, False), ("coarse only", False, True)):
    encoder, heads = model(fine, coarse)
    seconds = train_loop([encoder, heads], loss_of(encoder, heads), len(y), epochs, label=name)
    with torch.no_grad():
        z = encoder(data.test.x)
    entry = {"seconds": round(seconds, 1)}
    if fine:
        entry["fine"] = {str(m): accuracy(out, data.test.y) for m, out in zip(nesting, heads["fine"](z), strict=True)}
    if coarse:
        entry["coarse"] = accuracy(heads["coarse"](z)[0], to_coarse[data.test.y])
    results["models"][name] = entry

models = results["models"]
print(f"coarse task (5 super-classes) from z[:{args.coarse_dim}]: test accuracy")
for name in ("multi-task", "coarse only"):
    print(f"  {name:<12} {100 * models[name]['coarse']:.2f}%")
print("fine task (10 classes) from z[:m]: test accuracy (%)")
print(f"  {'model':<12}" + "".join(f"{m:>8}" for m in nesting))
for name in ("multi-task", "fine only"):
    print(f"  {name:<12}" + "".join(f"{100 * models[name]['fine'][str(m)]:>8.2f}" for m in nesting))
save_results(args.out, results)
