"""Our losses against LightlySSL's (`lightly`, the field's reference implementation) on identical
tensors: loss values and gradients, method by method.

Where a convention differs, the test states the exact relation between the two and checks that
relation, with the paper that justifies ours:
  * BYOL: ours is the paper's normalized MSE, 2 - 2 cos (Grill et al. 2020, eq. 2); lightly's
    NegativeCosineSimilarity is -cos (SimSiam's form), so ours = 2 + 2 * lightly, gradient x2.
  * MoCo: lightly's NTXentLoss with a memory bank is MoCo's InfoNCE; its bank drops the keys that
    do not fit before the end and restarts at row 0, ours wraps them round. Equal whenever the
    queue size is a multiple of the batch, which MoCo's own code asserts (K % B == 0).
  * DINO: lightly's warm-up of the teacher temperature steps per epoch along
    linspace(warm-up, final, W), as DINO's code does, so it reaches the final value at epoch W - 1;
    ours rises linearly per step and reaches it after the warm-up share of the run, i.e. after
    W epochs: ours at epoch e equals lightly's schedule with W + 1 warm-up epochs.
  * Momentum: lightly's cosine_schedule ends at step max_steps - 1, ours (BYOL sec. 3.2,
    cos(pi k / K)) at step K: ours over K steps equals lightly's over K + 1.
Everything else (NT-Xent, Barlow Twins, VICReg, MAE's masked MSE, the DINO centre, the EMA)
agrees term for term. I-JEPA has no counterpart in lightly.loss (its examples build the loss in
the training step), so it is not compared here.

Tolerances, float32 throughout: values rtol 1e-5 (atol 1e-6); gradients rtol 1e-4 and an atol of
1e-6 times the gradient's largest entry, room for float32 summation order only. The last test
shows a one-percent slip in a convention breaks them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_core.data.online import import_torchvision
from ssl_core.models.methods import build_method
from ssl_core.models.methods.barlow_twins import barlow_twins_loss
from ssl_core.models.methods.byol import byol_loss
from ssl_core.models.methods.dino import dino_loss, update_center
from ssl_core.models.methods.mae import mae_loss, patchify
from ssl_core.models.methods.moco import enqueue, moco_infonce
from ssl_core.models.methods.momentum import cosine_momentum, ema_update
from ssl_core.models.methods.simclr import nt_xent
from ssl_core.models.methods.vicreg import vicreg_loss

try:
    import_torchvision()  # first: lightly imports torchvision, whose CUDA-only ops need this
except ImportError:
    pytest.skip("torchvision (the dev extra) is not installed", allow_module_level=True)
lightly_loss = pytest.importorskip("lightly.loss")
lightly_utils = pytest.importorskip("lightly.models.utils")
lightly_scheduler = pytest.importorskip("lightly.utils.scheduler")

VALUE_TOL = {"rtol": 1e-5, "atol": 1e-6}


def assert_grads_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    scale = float(theirs.abs().max())
    assert scale > 0, "a zero gradient compares nothing"
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * scale)


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def value_and_grads(loss_fn, *tensors: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """loss_fn(*tensors) and its gradient with respect to each tensor (fresh leaves each call)."""
    xs = leaves(*tensors)
    loss = loss_fn(*xs)
    loss.backward()
    return loss.detach(), [x.grad for x in xs]


def projections(g: torch.Generator, batch: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views' projections, off-centre and unevenly scaled like a head's output."""
    scale = torch.rand(dim, generator=g) * 2 + 0.2
    shift = torch.randn(dim, generator=g)
    z1 = torch.randn(batch, dim, generator=g) * scale + shift
    z2 = z1 + 0.5 * torch.randn(batch, dim, generator=g) * scale
    return z1, z2


# -- SimCLR: NT-Xent ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch,dim,temperature", [(8, 16, 0.5), (32, 128, 0.1), (17, 64, 0.2)])
def test_nt_xent_matches_lightly(batch, dim, temperature):
    """Same loss (SimCLR eq. 1, mean over all 2B anchors); lightly drops the self-similarity
    column, ours masks it with -inf: the same softmax."""
    z1, z2 = projections(torch.Generator().manual_seed(batch), batch, dim)
    theirs_fn = lightly_loss.NTXentLoss(temperature=temperature)
    ours, ours_grads = value_and_grads(lambda a, b: nt_xent(a, b, temperature), z1, z2)
    theirs, theirs_grads = value_and_grads(theirs_fn, z1, z2)
    torch.testing.assert_close(ours, theirs, **VALUE_TOL)
    for o, t in zip(ours_grads, theirs_grads):
        assert_grads_close(o, t)


# -- MoCo: InfoNCE against a queue -------------------------------------------------------------
def test_moco_infonce_and_queue_match_lightly_memory_bank():
    """MoCo eq. 1 with lightly's NTXentLoss(memory_bank_size=(K, D)), our queue copied into its
    bank. Keys carry no gradient in either (MoCo's stop-gradient; lightly's MoCo examples compute
    them under no_grad). Over several steps, wrapping round the bank, both queues hold the same
    keys at the same rows: K = 4 B, as MoCo's code requires K % B == 0 (where it does not, lightly
    drops the keys past the end and ours wraps them round). Our `ignore` mask (no key of the
    query's own image) has no lightly counterpart and is left out."""
    batch, dim, size, temperature = 16, 32, 64, 0.2
    g = torch.Generator().manual_seed(0)
    theirs_fn = lightly_loss.NTXentLoss(temperature=temperature, memory_bank_size=(size, dim))
    queue = theirs_fn.memory_bank.bank.clone()  # lightly's random unit rows, ours from here on
    ptr = torch.zeros((), dtype=torch.long)
    for _ in range(6):  # 96 keys: the bank fills and wraps round once
        q, k = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g) * 3
        ours, (ours_grad,) = value_and_grads(lambda x, k=k: moco_infonce(x, k, queue.clone(), temperature), q)
        theirs, (theirs_grad,) = value_and_grads(lambda x, k=k: theirs_fn(x, k), q)  # enqueues k
        torch.testing.assert_close(ours, theirs, **VALUE_TOL)
        assert_grads_close(ours_grad, theirs_grad)
        enqueue(queue, ptr, F.normalize(k, dim=1))  # MoCo.training_step enqueues unit keys
        torch.testing.assert_close(queue, theirs_fn.memory_bank.bank, rtol=0, atol=0)


# -- BYOL: normalized MSE vs negative cosine ----------------------------------------------------
@pytest.mark.parametrize("batch,dim", [(8, 16), (32, 128)])
def test_byol_loss_is_two_plus_twice_lightlys_negative_cosine(batch, dim):
    """BYOL eq. 2: ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z). lightly's NegativeCosineSimilarity is
    -cos (SimSiam), so ours = 2 + 2 * theirs and our gradient is twice theirs; lightly's own BYOL
    benchmark writes 2 * criterion for this reason. Symmetrised (each view's prediction against
    the other view's target, summed as in the paper), ours = 4 + 2 * (theirs_12 + theirs_21)."""
    g = torch.Generator().manual_seed(dim)
    p1, z2 = projections(g, batch, dim)
    p2, z1 = projections(g, batch, dim)
    negative_cosine = lightly_loss.NegativeCosineSimilarity()
    ours, (ours_grad,) = value_and_grads(lambda p: byol_loss(p, z2), p1)
    theirs, (theirs_grad,) = value_and_grads(lambda p: negative_cosine(p, z2), p1)
    torch.testing.assert_close(ours, 2 + 2 * theirs, **VALUE_TOL)
    assert_grads_close(ours_grad, 2 * theirs_grad)

    ours, ours_grads = value_and_grads(lambda a, b: byol_loss(a, z2) + byol_loss(b, z1), p1, p2)
    theirs, theirs_grads = value_and_grads(
        lambda a, b: 2 * negative_cosine(a, z2) + 2 * negative_cosine(b, z1), p1, p2)
    torch.testing.assert_close(ours, 4 + theirs, **VALUE_TOL)
    for o, t in zip(ours_grads, theirs_grads):
        assert_grads_close(o, t)


def test_byol_target_gets_no_gradient_from_ours():
    """BYOL's stop-gradient on the target is inside our loss; lightly's criterion leaves it to the
    caller (its BYOL computes targets under no_grad), so it is not compared above."""
    p, z = leaves(*projections(torch.Generator().manual_seed(1), 8, 16))
    byol_loss(p, z).backward()
    assert z.grad is None and p.grad is not None


# -- DINO: centred, sharpened teacher ------------------------------------------------------------
@pytest.mark.parametrize("student_views,batch,k", [(2, 16, 64), (6, 8, 128)])
def test_dino_loss_and_center_match_lightly(student_views, batch, k):
    """DINO eq. 1 over every (teacher, student) pair of different views, same temperatures and
    the same centre (lightly's (1, 1, K) buffer set to ours); then both centres move the same way
    (momentum 0.9 towards the mean teacher logit). Views 3.. are multi-crop's local views, seen by
    the student only. Gradients with respect to the student; the teacher is a constant in both."""
    g = torch.Generator().manual_seed(student_views)
    student = torch.randn(student_views, batch, k, generator=g) * 0.5
    teacher = torch.randn(2, batch, k, generator=g) * 0.5 + 0.3
    center = torch.randn(k, generator=g) * 0.2
    student_temp, teacher_temp, momentum = 0.1, 0.05, 0.9
    theirs_fn = lightly_loss.DINOLoss(output_dim=k, warmup_teacher_temp=teacher_temp, teacher_temp=teacher_temp,
                                      student_temp=student_temp, center_momentum=momentum)
    theirs_fn.center.copy_(center.view(1, 1, k))
    ours, (ours_grad,) = value_and_grads(lambda s: dino_loss(s, teacher, center, student_temp, teacher_temp),
                                         student)
    theirs, (theirs_grad,) = value_and_grads(
        lambda s: theirs_fn(list(teacher), list(s), teacher_temp=teacher_temp), student)
    torch.testing.assert_close(ours, theirs, **VALUE_TOL)
    assert_grads_close(ours_grad, theirs_grad)
    torch.testing.assert_close(update_center(center, teacher, momentum), theirs_fn.center.view(k), **VALUE_TOL)


def test_dino_teacher_temperature_warm_up_is_lightlys_with_one_more_epoch():
    """lightly (like DINO's code) warms the teacher temperature up along linspace(0.04, 0.07, W),
    one value per epoch, reaching 0.07 at epoch W - 1; ours rises linearly over the first
    `warmup_teacher_temp_fraction` of the run, reaching it after W epochs. At the start of each
    epoch e ours is therefore lightly's schedule with W + 1 warm-up epochs. Checked through the
    loss: lightly's at `epoch=e` against ours at our temperature for that epoch."""
    epochs, warmup = 10, 3
    method = build_method({"name": "dino", "out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16,
                           "warmup_teacher_temp": 0.04, "teacher_temp": 0.07,
                           "warmup_teacher_temp_fraction": warmup / epochs},
                          "convnet", resolution=32, num_classes=10)
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(2, 8, 32, generator=g), torch.randn(2, 8, 32, generator=g)
    center = torch.zeros(32)
    temps = []
    for epoch in range(epochs):
        method.progress.fill_(epoch / epochs)  # what after_step leaves at the start of the epoch
        temp = float(method.current_teacher_temp())
        temps.append(temp)
        theirs_fn = lightly_loss.DINOLoss(output_dim=32, warmup_teacher_temp=0.04, teacher_temp=0.07,
                                          warmup_teacher_temp_epochs=warmup + 1)
        theirs = theirs_fn(list(teacher), list(student), epoch=epoch)
        torch.testing.assert_close(dino_loss(student, teacher, center, 0.1, temp), theirs, **VALUE_TOL)
    assert temps[warmup] == pytest.approx(0.07) and temps[warmup - 1] < 0.07  # lightly (W): 0.07 at W - 1


# -- Barlow Twins and VICReg ---------------------------------------------------------------------
@pytest.mark.parametrize("batch,dim,lambd", [(16, 32, 5e-3), (32, 128, 0.04)])
def test_barlow_twins_matches_lightly(batch, dim, lambd):
    """Barlow Twins eq. 1-2 with the paper's affine-free batch norm on each view (biased variance,
    eps 1e-5 inside the root: lightly calls F.batch_norm, ours writes it out), C = z1_n^T z2_n / B,
    off-diagonal weight lambda unscaled in both."""
    z1, z2 = projections(torch.Generator().manual_seed(dim), batch, dim)
    theirs_fn = lightly_loss.BarlowTwinsLoss(lambda_param=lambd)
    ours, ours_grads = value_and_grads(lambda a, b: barlow_twins_loss(a, b, lambd)["loss"], z1, z2)
    theirs, theirs_grads = value_and_grads(theirs_fn, z1, z2)
    torch.testing.assert_close(ours, theirs, **VALUE_TOL)
    for o, t in zip(ours_grads, theirs_grads):
        assert_grads_close(o, t)


@pytest.mark.parametrize("batch,dim,weights", [(16, 32, (25.0, 25.0, 1.0)), (32, 128, (10.0, 5.0, 2.0))])
def test_vicreg_matches_lightly(batch, dim, weights):
    """VICReg eq. 6 as the official code computes it, in both: variance hinge on
    sqrt(unbiased Var + 1e-4) averaged over the two views; covariance with the unbiased (B - 1)
    estimate, off-diagonal squares summed and divided by D, summed over the two views; invariance
    the mean squared error. Lightly's (lambda, mu, nu) are our (invariance, variance, covariance)."""
    z1, z2 = projections(torch.Generator().manual_seed(dim), batch, dim)
    z1, z2 = z1 * 0.3, z2 * 0.3  # some dimensions below unit std, so the hinge is active
    invariance, variance, covariance = weights
    theirs_fn = lightly_loss.VICRegLoss(lambda_param=invariance, mu_param=variance, nu_param=covariance, eps=1e-4)
    ours, ours_grads = value_and_grads(
        lambda a, b: vicreg_loss(a, b, invariance, variance, covariance, eps=1e-4)["loss"], z1, z2)
    theirs, theirs_grads = value_and_grads(theirs_fn, z1, z2)
    assert 0 < vicreg_loss(z1, z2)["variance"] < 1  # the hinge is neither off nor saturated
    torch.testing.assert_close(ours, theirs, **VALUE_TOL)
    for o, t in zip(ours_grads, theirs_grads):
        assert_grads_close(o, t)


# -- MAE: masked-patch MSE -----------------------------------------------------------------------
@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_loss_matches_lightlys_recipe(norm_pix):
    """lightly has no MAE loss class; its MAE (examples, benchmark) patchifies with
    lightly.models.utils.patchify, gathers the masked patches and takes nn.MSELoss against the
    decoder's predictions for them; the normalized-pixel target (MAE sec. 3, table 1d) is its
    normalize_mean_var. Ours averages over a (B, T) mask instead of gathering: equal when every
    image hides the same number of patches, as MAE's random masking does."""
    g = torch.Generator().manual_seed(3)
    batch, size, patch = 8, 32, 4
    images = torch.rand(batch, 3, size, size, generator=g)
    patches = patchify(images, patch)
    torch.testing.assert_close(patches, lightly_utils.patchify(images, patch), rtol=0, atol=0)
    tokens = patches.shape[1]
    hidden = torch.rand(batch, tokens, generator=g).argsort(dim=1)[:, : tokens * 3 // 4]  # 75% masked
    mask = torch.zeros(batch, tokens, dtype=torch.bool).scatter_(1, hidden, True)
    pred = torch.randn(batch, tokens, patches.shape[2], generator=g)

    def theirs_fn(p):
        target = lightly_utils.get_at_index(patches, hidden)
        if norm_pix:
            target = lightly_utils.normalize_mean_var(target, dim=-1)
        return torch.nn.MSELoss()(lightly_utils.get_at_index(p, hidden), target)

    ours, (ours_grad,) = value_and_grads(lambda p: mae_loss(p, patches, mask, norm_pix=norm_pix), pred)
    theirs, (theirs_grad,) = value_and_grads(theirs_fn, pred)
    torch.testing.assert_close(ours, theirs, **VALUE_TOL)
    assert_grads_close(ours_grad, theirs_grad)


# -- momentum encoders ---------------------------------------------------------------------------
def test_ema_update_matches_lightlys_update_momentum():
    g = torch.Generator().manual_seed(4)
    online = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.Linear(32, 8))
    ours_target, theirs_target = (torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32),
                                                      torch.nn.Linear(32, 8)) for _ in range(2))
    with torch.no_grad():
        for module in (online, ours_target):
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    theirs_target.load_state_dict(ours_target.state_dict())
    for momentum in (0.99, 0.9, 0.5):
        ema_update(ours_target, online, momentum)
        lightly_utils.update_momentum(online, theirs_target, m=momentum)
    for ours, theirs in zip(ours_target.parameters(), theirs_target.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("base,total", [(0.99, 600), (0.996, 150)])
def test_cosine_momentum_is_lightlys_schedule_over_one_more_step(base, total):
    """Ours: 1 - (1 - base)(cos(pi k / K) + 1) / 2, 1 at k = K (BYOL sec. 3.2); lightly's
    cosine_schedule divides by max_steps - 1 so that it reaches 1 on the last step it is called
    for. Ours over K steps is lightly's over K + 1."""
    for step in range(total):
        assert cosine_momentum(step, total, base) == pytest.approx(
            lightly_scheduler.cosine_schedule(step, total + 1, base, 1.0), rel=0, abs=1e-12)
    assert cosine_momentum(total // 2, total, base) != pytest.approx(
        lightly_scheduler.cosine_schedule(total // 2, total, base, 1.0), rel=0, abs=1e-9)


# -- the tolerances can fail ---------------------------------------------------------------------
def test_a_one_percent_slip_in_a_convention_breaks_the_comparisons():
    """Comparisons as above with one setting of ours off by one percent (a temperature, a weight)
    or the centre left out: the same tolerances reject each."""
    batch, dim = 32, 64
    z1, z2 = projections(torch.Generator().manual_seed(5), batch, dim)
    slips = {
        "nt_xent temperature": (nt_xent(z1, z2, 0.2 * 1.01), lightly_loss.NTXentLoss(temperature=0.2)(z1, z2)),
        "vicreg variance weight": (vicreg_loss(z1 * 0.3, z2 * 0.3, variance=25.0 * 1.01)["loss"],
                                   lightly_loss.VICRegLoss()(z1 * 0.3, z2 * 0.3)),
        "barlow twins lambda": (barlow_twins_loss(z1, z2, 5e-3 * 1.01)["loss"],
                                lightly_loss.BarlowTwinsLoss(lambda_param=5e-3)(z1, z2)),
    }
    teacher, student = z1.view(2, batch // 2, dim) * 0.1, z2.view(2, batch // 2, dim) * 0.1
    theirs_dino = lightly_loss.DINOLoss(output_dim=dim, teacher_temp=0.04)
    theirs_dino.center.copy_(torch.randn(1, 1, dim, generator=torch.Generator().manual_seed(6)) * 0.01)
    slips["dino centre"] = (dino_loss(student, teacher, torch.zeros(dim), 0.1, 0.04),
                            theirs_dino(list(teacher), list(student)))
    for name, (ours, theirs) in slips.items():
        assert not torch.allclose(ours, theirs, **VALUE_TOL), name
