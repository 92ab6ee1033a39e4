"""DINO: the loss against a naive reference, centring, a collapsed teacher, the EMA teacher, multi-crop."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.models.backbones import build_backbone
from ssl_core.models.methods import build_method
from ssl_core.models.methods.momentum import run_momentum
from ssl_core.models.methods.dino import dino_loss, encode_crop, update_center


def naive_dino_loss(student, teacher, center, student_temp, teacher_temp) -> float:
    student, teacher, center = student.double(), teacher.double(), center.double()
    total, pairs = 0.0, 0
    for t in range(len(teacher)):
        for s in range(len(student)):
            if s == t:
                continue
            for b in range(student.shape[1]):
                target = torch.softmax((teacher[t, b] - center) / teacher_temp, dim=0)
                log_p = torch.log_softmax(student[s, b] / student_temp, dim=0)
                total += float(-(target * log_p).sum()) / student.shape[1]
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("views,batch,k", [(2, 3, 5), (4, 2, 7), (6, 1, 16)])
def test_matches_naive_reference(views, batch, k):
    g = torch.Generator().manual_seed(views)
    student = torch.randn(views, batch, k, generator=g)
    teacher, center = torch.randn(2, batch, k, generator=g), torch.randn(k, generator=g)
    assert dino_loss(student, teacher, center, 0.1, 0.04).item() == pytest.approx(
        naive_dino_loss(student, teacher, center, 0.1, 0.04), rel=1e-5)


def test_rejects_bad_arguments():
    s, t, c = torch.randn(2, 3, 5), torch.randn(2, 3, 5), torch.zeros(5)
    with pytest.raises(ValueError, match="temperatures"):
        dino_loss(s, t, c, 0.0, 0.04)
    with pytest.raises(ValueError, match=r"\(S, B, K\)"):
        dino_loss(s, torch.randn(2, 3, 4), c, 0.1, 0.04)
    with pytest.raises(ValueError, match="student views"):
        dino_loss(s[:1], t, c, 0.1, 0.04)
    with pytest.raises(ValueError, match="momentum"):
        update_center(c, t, 1.5)


def test_center_moves_toward_the_batch_mean_of_teacher_outputs():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 8, 6, generator=g) + 3.0
    batch_mean = teacher.reshape(-1, 6).mean(dim=0)
    center = torch.zeros(6)
    distances = []
    for _ in range(30):
        new = update_center(center, teacher, 0.9)
        torch.testing.assert_close(new, 0.9 * center + 0.1 * batch_mean)
        center = new
        distances.append(float((center - batch_mean).norm()))
    # The distance to the batch mean shrinks by the momentum at every update.
    assert all(b == pytest.approx(0.9 * a, rel=1e-4) for a, b in zip(distances, distances[1:]))
    assert distances[-1] < 0.05 * distances[0]


def test_collapsed_teacher_after_centring_gives_uniform_targets():
    """A teacher that outputs one vector for every image, once the centre has caught up with
    it, gives uniform targets: the loss is log K + KL(uniform || student), log K exactly for a
    uniform student. Without the centre, sharpening turns the same teacher one-hot."""
    k = 10
    g = torch.Generator().manual_seed(0)
    collapsed = torch.randn(k, generator=g)
    teacher = collapsed.expand(2, 4, k)
    center = collapsed.clone()
    uniform_student = torch.full((2, 4, k), 0.3)
    assert dino_loss(uniform_student, teacher, center, 0.1, 0.04).item() == pytest.approx(math.log(k), rel=1e-6)
    student = torch.randn(2, 4, k, generator=g)
    log_p = torch.log_softmax(student / 0.1, dim=-1)
    expected = -log_p.mean(dim=-1).mean()  # cross-entropy against uniform targets
    loss = dino_loss(student, teacher, center, 0.1, 0.04)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() > math.log(k)
    # Uncentred, the sharpened teacher puts (almost) all its mass on its largest output.
    loss_uncentred = dino_loss(student, teacher, torch.zeros(k), 0.1, 0.04)
    top = int(collapsed.argmax())
    one_hot_loss = -torch.stack([log_p[1, :, top], log_p[0, :, top]]).mean()
    assert loss_uncentred.item() == pytest.approx(one_hot_loss.item(), rel=0.05)


def _model(**overrides):
    torch.manual_seed(0)
    return build_method({"name": "dino", "out_dim": 64, "hidden_dim": 64, **overrides}, "convnet",
                        resolution=32, num_classes=2)


def _images(n=8):
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_step_updates_the_center_with_the_teacher_outputs():
    model = _model()
    images = _images()
    torch.manual_seed(1)
    x, _ = model.make_views(images)
    with torch.no_grad():
        teacher = model.teacher_head(model.teacher_backbone(x))
    torch.manual_seed(1)
    out = model.training_step(images, None)
    torch.testing.assert_close(model.center, 0.1 * teacher.mean(dim=0), atol=1e-6, rtol=1e-5)
    # The reported loss is the cross-entropy less the teacher's entropy (a KL, so >= 0).
    assert out["loss"].item() == pytest.approx((out["cross_entropy"] - out["teacher_entropy"]).item(), abs=1e-5)
    assert out["loss"].item() >= -1e-6


def test_teacher_gets_no_gradient_and_moves_by_ema():
    model = _model()
    model.training_step(_images(), None)["loss"].backward()
    student = list(model.backbone.parameters()) + list(model.head.parameters())
    teacher = list(model.teacher_backbone.parameters()) + list(model.teacher_head.parameters())
    assert all(t.grad is None and not t.requires_grad for t in teacher)
    assert model.head.last_layer.grad is not None
    with torch.no_grad():
        for p in student:
            p.add_(torch.randn_like(p))
    before = [t.clone() for t in teacher]
    model.after_step(4, 10)
    m = run_momentum(4, 10, 0.996, model.cfg.momentum_share_left)
    for old, t, s in zip(before, teacher, student):
        torch.testing.assert_close(t, m * old + (1 - m) * s)


def test_teacher_temperature_warms_up_linearly():
    model = _model(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_fraction=0.5)
    temps = [float(model.current_teacher_temp())]
    for step in range(10):
        model.after_step(step, 10)
        temps.append(float(model.current_teacher_temp()))
    assert temps[0] == pytest.approx(0.04)
    assert temps[2] == pytest.approx(0.04 + 0.03 * 0.4)
    assert temps[5] == pytest.approx(0.07) and temps[10] == pytest.approx(0.07)


def test_multi_crop_runs_on_a_cnn_and_a_vit():
    model = _model(n_local_crops=2)
    images = _images(4)
    x, local = model.make_views(images)
    assert x.shape == (8, 3, 32, 32) and local.shape == (8, 3, 16, 16)
    out = model.training_step(images, None)
    assert torch.isfinite(out["loss"])
    vit = build_backbone("vit_tiny", 32).eval()
    full = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encode_crop(vit, full), vit(full))  # native size: unchanged
        assert encode_crop(vit, torch.randn(2, 3, 16, 16)).shape == (2, vit.out_dim)


def test_last_layer_is_frozen_for_the_first_epoch():
    """DINO's freeze_last_layer: no update of the last layer in the first epoch, then updates."""
    model = _model(freeze_last_layer_epochs=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    start, history = model.head.last_layer.detach().clone(), []
    for step in range(4):  # 3 steps per epoch: steps 0-2 frozen, step 3 not
        model.training_step(_images(), None)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        model.after_step(step, 12, steps_per_epoch=3)
        history.append(torch.equal(model.head.last_layer, start))
    assert history == [True, True, True, False]
    assert not torch.equal(next(model.backbone.parameters()), next(_model().backbone.parameters()))  # the rest trains
