import pytest
import torch
from torch import nn

from matryoshka import FixedFeatureHead, InfoNCELoss, MatryoshkaLoss, MRLHead

NESTING = [4, 8, 16, 32]


def test_mrl_head_shapes_and_parameters():
    head = MRLHead(32, 10, NESTING)
    out = head(torch.randn(5, 32))
    assert [o.shape for o in out] == [(5, 10)] * 4
    assert sum(p.numel() for p in head.parameters()) == sum(m * 10 + 10 for m in NESTING)


def test_mrl_head_reads_only_its_prefix():
    torch.manual_seed(0)
    head = MRLHead(32, 3, NESTING)
    z = torch.randn(4, 32)
    z2 = z.clone()
    z2[:, 8:] = torch.randn(4, 24)  # change features beyond dim 8
    a, b = head(z), head(z2)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    assert not torch.allclose(a[2], b[2])


def test_mrl_e_equals_sliced_shared_weight():
    torch.manual_seed(0)
    head = MRLHead(32, 7, NESTING, tied=True)
    assert sum(p.numel() for p in head.parameters()) == 32 * 7 + 7
    z = torch.randn(6, 32)
    w, b = head.classifier.weight, head.classifier.bias
    for m, out in zip(NESTING, head(z), strict=True):
        torch.testing.assert_close(out, z[:, :m] @ w[:, :m].T + b)


def test_mrl_e_without_bias():
    head = MRLHead(32, 7, NESTING, tied=True, bias=False)
    z = torch.randn(3, 32)
    torch.testing.assert_close(head(z)[1], z[:, :8] @ head.classifier.weight[:, :8].T)


def test_fixed_feature_head_ignores_later_features():
    head = FixedFeatureHead(32, 5, k=8)
    z = torch.randn(3, 32)
    z2 = torch.cat([z[:, :8], torch.randn(3, 24)], dim=1)
    (out,) = head(z)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, head(z2)[0])
    with pytest.raises(ValueError, match="k must be in"):
        FixedFeatureHead(32, 5, k=33)


@pytest.mark.parametrize(
    "head", [MRLHead(32, 3, NESTING), MRLHead(32, 3, NESTING, tied=True), FixedFeatureHead(32, 3, 8)]
)
@pytest.mark.parametrize("shape", [(4, 16), (4, 33), (32,), (2, 4, 32)])
def test_heads_reject_wrong_shapes(head, shape):
    with pytest.raises(ValueError, match=r"expects embeddings of shape \(batch, 32\)"):
        head(torch.randn(*shape))


def test_head_rejects_bad_nesting():
    with pytest.raises(ValueError, match="larger than the embedding size"):
        MRLHead(16, 3, [8, 32])
    with pytest.raises(ValueError, match="empty"):
        MRLHead(16, 3, [])


def _devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("tied", [False, True])
def test_classification_loss_equals_explicit_loop(device, tied):
    torch.manual_seed(0)
    head = MRLHead(32, 5, NESTING, tied=tied).to(device)
    z = torch.randn(8, 32, device=device, requires_grad=True)
    y = torch.randint(0, 5, (8,), device=device)
    weights = [1.0, 0.5, 2.0, 1.0]
    loss = MatryoshkaLoss(nn.CrossEntropyLoss(), NESTING, weights).to(device)(head(z), y)
    (g_lib,) = torch.autograd.grad(loss, z)
    explicit = sum(
        c * nn.functional.cross_entropy(z[:, :m] @ w.T + b, y)
        for c, m, (w, b) in zip(weights, NESTING, _head_weights(head), strict=True)
    )
    (g_ref,) = torch.autograd.grad(explicit, z)
    torch.testing.assert_close(loss, explicit)
    torch.testing.assert_close(g_lib, g_ref)


def _head_weights(head):
    if head.tied:
        w, b = head.classifier.weight, head.classifier.bias
        return [(w[:, :m], b) for m in head.nesting]
    return [(c.weight, c.bias) for c in head.classifiers]


def test_loss_weights_follow_outputs_device_even_if_module_not_moved():
    # The loss module is left on the CPU on purpose (the official code's bug): forward still works.
    loss = MatryoshkaLoss(nn.CrossEntropyLoss(), NESTING, [1, 2, 3, 4])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    outputs = [torch.randn(4, 3, device=device) for _ in NESTING]
    assert loss(outputs, torch.zeros(4, dtype=torch.long, device=device)).device.type == device


def test_embedding_loss_truncates_and_renormalises_both_towers():
    torch.manual_seed(0)
    a, b = torch.randn(6, 32), torch.randn(6, 32)
    seen = []

    def record(x, y):
        seen.append((x, y))
        return (x * y).sum()

    MatryoshkaLoss(record, NESTING)(a, b)
    for m, (x, y) in zip(NESTING, seen, strict=True):
        torch.testing.assert_close(x, nn.functional.normalize(a[:, :m], dim=1))
        torch.testing.assert_close(y, nn.functional.normalize(b[:, :m], dim=1))


def test_embedding_loss_distillation_truncates_teacher():
    student, teacher = torch.randn(4, 32), torch.randn(4, 32)
    loss = MatryoshkaLoss(nn.MSELoss(), NESTING, normalize=False)(student, teacher)
    expected = sum(nn.functional.mse_loss(student[:, :m], teacher[:, :m]) for m in NESTING)
    torch.testing.assert_close(loss, expected)


def test_embedding_loss_rejects_mismatched_target_embedding():
    with pytest.raises(ValueError, match="must match the outputs' shape"):
        MatryoshkaLoss(nn.MSELoss(), NESTING)(torch.randn(4, 32), torch.randn(4, 64))


def test_embedding_loss_passes_labels_through():
    z = torch.randn(4, 32)
    labels = torch.tensor([0, 1, 0, 1])
    got = []
    MatryoshkaLoss(lambda x, y: got.append(y) or x.sum(), NESTING)(z, labels)
    assert all(g is labels for g in got)


def test_matryoshka_info_nce_equals_loop():
    torch.manual_seed(0)
    q, d = torch.randn(16, 32), torch.randn(16, 32)
    loss = MatryoshkaLoss(InfoNCELoss(scale=10.0), NESTING)(q, d)
    expected = 0
    for m in NESTING:
        qm, dm = nn.functional.normalize(q[:, :m], dim=1), nn.functional.normalize(d[:, :m], dim=1)
        expected = expected + nn.functional.cross_entropy(10.0 * qm @ dm.T, torch.arange(16))
    torch.testing.assert_close(loss, expected)


def test_loss_rejects_wrong_output_count_and_shapes():
    loss = MatryoshkaLoss(nn.CrossEntropyLoss(), NESTING)
    with pytest.raises(ValueError, match="got 2 outputs for 4 nesting dims"):
        loss([torch.randn(2, 3)] * 2, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="larger than the embedding size"):
        loss(torch.randn(2, 16), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(batch, d\)"):
        loss(torch.randn(2, 3, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="unsorted"):
        MatryoshkaLoss(nn.CrossEntropyLoss(), [16, 8])


def test_prefix_distillation_is_zero_when_every_prefix_ranks_like_the_full_dim():
    from matryoshka.nn.distillation import PrefixDistillationLoss

    loss = PrefixDistillationLoss([8, 16, 32])
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(12, 32, generator=g), torch.randn(20, 32, generator=g)
    q[:, 8:], d[:, 8:] = 0, 0  # all the signal in the first 8 dims: each prefix ranks exactly like the full dim
    assert loss(q, d).item() < 1e-6
    q, d = torch.randn(12, 32, generator=g, requires_grad=True), torch.randn(20, 32, generator=g)
    value = loss(q, d)
    assert value.item() > 0.01
    value.backward()
    # the teacher (full dim) takes no gradient: dims 16..31 only enter through it, so their gradient is zero
    assert q.grad[:, :16].abs().sum() > 0 and q.grad[:, 16:].abs().sum() == 0
    with pytest.raises(ValueError, match="larger than the embedding size"):
        PrefixDistillationLoss([8, 64])(q, d)


@pytest.mark.parametrize("tied", [False, True])
def test_logit_scale_multiplies_each_dims_logits_by_its_learned_temperature(tied):
    torch.manual_seed(0)
    plain = MRLHead(32, 5, NESTING, tied=tied)
    scaled = MRLHead(32, 5, NESTING, tied=tied, logit_scale=True)
    scaled.load_state_dict(plain.state_dict(), strict=False)  # same classifiers; log scales start at 0
    assert sum(p.numel() for p in scaled.parameters()) == sum(p.numel() for p in plain.parameters()) + len(NESTING)
    z = torch.randn(6, 32)
    for a, b in zip(plain(z), scaled(z), strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        scaled.log_scales.copy_(torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0])))
    for i, (a, b) in enumerate(zip(plain(z), scaled(z), strict=True)):
        torch.testing.assert_close(b, (i + 1) * a)
        torch.testing.assert_close(scaled.logits_at(z, i), b)


def test_fixed_feature_head_logit_scale():
    head = FixedFeatureHead(32, 5, k=8, logit_scale=True)
    z = torch.randn(3, 32)
    plain = head.classifier(z[:, :8])
    with torch.no_grad():
        head.log_scale.fill_(torch.log(torch.tensor(2.5)))
    torch.testing.assert_close(head(z)[0], 2.5 * plain)
