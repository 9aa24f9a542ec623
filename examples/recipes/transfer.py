"""Transfer learning from a Matryoshka encoder: frozen linear probes per dim vs end-to-end fine-tuning.

    python examples/recipes/transfer.py              # a few minutes on a CPU

Trains an MRL encoder on Fashion-MNIST, then moves to a new task, sklearn's handwritten digits (8x8, up-scaled to
28x28): (a) frozen encoder, a fresh linear probe on each prefix z[:m]; (b) the encoder fine-tuned end to end with a new
Matryoshka head; (c) the same network trained on the digits from scratch. Accuracy per dim on the digits test split.
"""

import copy

import torch
from _common import fashion_mnist, recipe_args, save_results, train_loop
from torch import nn
from torch.nn.functional import interpolate

from matryoshka import MatryoshkaLoss, MRLHead, create_backbone, nesting_list
from matryoshka.data import load_dataset
from matryoshka.evaluate import LinearProbe, accuracy

args = recipe_args(__doc__, "transfer", embed_dim=64, finetune_epochs=15)
source = fashion_mnist(args.quick, args.seed)
epochs = 1 if args.quick else args.epochs
finetune_epochs = 2 if args.quick else args.finetune_epochs
d, nesting = args.embed_dim, nesting_list(args.embed_dim, 8)
loss_fn = MatryoshkaLoss(nn.CrossEntropyLoss(), nesting)


def upscale(x):
    return interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)


digits = load_dataset("digits", seed=args.seed)
train_x, train_y = upscale(torch.cat([digits.train.x, digits.val.x])), torch.cat([digits.train.y, digits.val.y])
test_x, test_y = upscale(digits.test.x), digits.test.y


def train(encoder, head, x, y, n_epochs, lr, label):
    return train_loop(
        [encoder, head], lambda idx: loss_fn(head(encoder(x[idx])), y[idx]), len(y), n_epochs, 64, lr, label
    )


def per_dim_accuracy(encoder, head):
    with torch.no_grad():
        return {str(m): accuracy(out, test_y) for m, out in zip(nesting, head(encoder(test_x)), strict=True)}


torch.manual_seed(args.seed)
encoder, head = create_backbone("cnn", d, (1, 28, 28), width=16), MRLHead(d, 10, nesting)
train_loop(
    [encoder, head],
    lambda idx: loss_fn(head(encoder(source.train.x[idx])), source.train.y[idx]),
    len(source.train),
    epochs,
    label="pre-training on Fashion-MNIST",
)
with torch.no_grad():
    z_train, z_test = encoder(train_x), encoder(test_x)
frozen = {str(m): LinearProbe(max_iter=200).fit(z_train[:, :m], train_y).score(z_test[:, :m], test_y) for m in nesting}

tuned_encoder, tuned_head = copy.deepcopy(encoder), MRLHead(d, 10, nesting)
train(tuned_encoder, tuned_head, train_x, train_y, finetune_epochs, 1e-3, "fine-tuning on digits")
finetuned = per_dim_accuracy(tuned_encoder, tuned_head)

torch.manual_seed(args.seed)
scratch_encoder, scratch_head = create_backbone("cnn", d, (1, 28, 28), width=16), MRLHead(d, 10, nesting)
train(scratch_encoder, scratch_head, train_x, train_y, finetune_epochs, 3e-3, "digits from scratch")
scratch = per_dim_accuracy(scratch_encoder, scratch_head)

results = {"nesting": nesting, "frozen_probe": frozen, "fine_tuned": finetuned, "from_scratch": scratch}
print(f"digits test accuracy (%) per dim, {len(train_y)} training images")
print(f"  {'method':<24}" + "".join(f"{m:>8}" for m in nesting))
for name in ("frozen_probe", "fine_tuned", "from_scratch"):
    print(f"  {name:<24}" + "".join(f"{100 * results[name][str(m)]:>8.2f}" for m in nesting))
save_results(args.out, results)
