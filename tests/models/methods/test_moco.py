"""MoCo: InfoNCE against a naive reference, a FIFO queue, keys from the momentum encoder only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_core.models.methods import build_method
from ssl_core.models.methods.moco import enqueue, image_ids, moco_infonce


def naive_infonce(q, k, queue, temperature, ignore=None) -> float:
    q, k = F.normalize(q, dim=1).double(), F.normalize(k, dim=1).double()
    queue = queue.double()
    total = 0.0
    for i in range(len(q)):
        positive = math.exp(float(q[i] @ k[i]) / temperature)
        negatives = sum(math.exp(float(q[i] @ queue[j]) / temperature)
                        for j in range(len(queue)) if ignore is None or not ignore[i, j])
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


@pytest.mark.parametrize("batch,dim,size,temperature", [(2, 3, 4, 0.2), (5, 8, 7, 0.07), (4, 4, 16, 1.0)])
def test_matches_naive_reference(batch, dim, size, temperature):
    g = torch.Generator().manual_seed(batch)
    q, k = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    queue = F.normalize(torch.randn(size, dim, generator=g), dim=1)
    ignore = torch.rand(batch, size, generator=g) < 0.3
    assert moco_infonce(q, k, queue, temperature).item() == pytest.approx(
        naive_infonce(q, k, queue, temperature), rel=1e-5)
    assert moco_infonce(q, k, queue, temperature, ignore).item() == pytest.approx(
        naive_infonce(q, k, queue, temperature, ignore), rel=1e-5)


def test_rejects_bad_arguments():
    q, queue = torch.randn(2, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        moco_infonce(q, q, queue, 0.0)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        moco_infonce(q, torch.randn(3, 3), queue, 0.2)
    with pytest.raises(ValueError, match="queue"):
        moco_infonce(q, q, torch.randn(4, 5), 0.2)


def test_queue_is_fifo_and_wraps_round():
    queue, ptr, ids = torch.zeros(5, 2), torch.zeros((), dtype=torch.long), torch.full((5,), -1)
    keys = torch.arange(12.0).view(6, 2)  # six keys, rows [0, 1], [2, 3], ...
    enqueue(queue, ptr, keys[:2], torch.tensor([0, 1]), ids)
    enqueue(queue, ptr, keys[2:4], torch.tensor([2, 3]), ids)
    assert ptr.item() == 4 and torch.equal(queue[:4], keys[:4])
    enqueue(queue, ptr, keys[4:6], torch.tensor([4, 5]), ids)
    # Key 5 wraps round onto row 0, replacing key 0, the oldest.
    assert ptr.item() == 1
    assert torch.equal(queue, keys[[5, 1, 2, 3, 4]])
    assert ids.tolist() == [5, 1, 2, 3, 4]


def test_image_ids_tell_images_apart():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8, generator=g)
    changed = images.clone()
    changed[1, 3, 3, 0] ^= 1  # one bit of one pixel
    assert torch.equal(image_ids(images), image_ids(images.clone()))
    assert (image_ids(images) != image_ids(changed)).tolist() == [False, True, False, False]
    assert len(set(image_ids(images).tolist())) == 4


def _model(**overrides):
    torch.manual_seed(0)
    return build_method({"name": "moco", "queue_size": 64, **overrides}, "convnet", resolution=32, num_classes=2)


def _images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)


def test_queued_keys_come_from_the_momentum_encoder_and_carry_no_gradient():
    model = _model(bn_splits=1)
    with torch.no_grad():  # make the key encoder differ from the query encoder
        for p in model.key_projector.parameters():
            p.add_(0.1 * torch.randn_like(p))
    images = _images()
    torch.manual_seed(1)
    _, x2 = model.make_views(images)
    with torch.no_grad():
        expected = F.normalize(model.key_projector(model.key_backbone(x2)), dim=1)
        from_queries = F.normalize(model.projector(model.backbone(x2)), dim=1)
    torch.manual_seed(1)
    model.training_step(images, None)["loss"].backward()
    assert model.queue_ptr.item() == 8
    torch.testing.assert_close(model.queue[:8], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model.queue[:8], from_queries, atol=1e-3)
    assert torch.equal(model.queue_ids[:8], image_ids(images))
    assert all(p.grad is None and not p.requires_grad for p in model.key_backbone.parameters())
    assert all(p.grad is None for p in model.key_projector.parameters())


def test_shuffled_sub_batches_return_keys_in_input_order():
    model = _model(bn_splits=4).eval()  # eval: BatchNorm no longer depends on the sub-batch
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        whole = model.key_projector(model.key_backbone(x))
        split = model._project(model.key_backbone, model.key_projector, x, shuffle=True)
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-4)


def test_key_encoder_moves_by_ema_of_the_query_encoder():
    model = _model(momentum=0.9)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.key_backbone.parameters()]
    model.after_step(0, 10)
    for old, key, query in zip(before, model.key_backbone.parameters(), model.backbone.parameters()):
        torch.testing.assert_close(key, 0.9 * old + 0.1 * query)


def test_a_query_never_meets_its_own_image_among_the_negatives():
    model = _model(bn_splits=1)
    images = _images(4)
    torch.manual_seed(1)
    model.training_step(images, None)  # queue rows 0-3: keys of images 0-3
    queue = model.queue.clone()
    # The same batch again: row i of the queue is an older key of query i's own image.
    torch.manual_seed(2)
    x1, x2 = model.make_views(images)
    with torch.no_grad():
        q = model.projector(model.backbone(x1))
        k = model.key_projector(model.key_backbone(x2))
    torch.manual_seed(2)
    loss = model.training_step(images, None)["loss"].item()
    own = torch.zeros(4, len(queue), dtype=torch.bool)
    own[range(4), range(4)] = True
    assert loss == pytest.approx(naive_infonce(q, k, queue, 0.2, ignore=own), rel=1e-4)
    assert loss != pytest.approx(naive_infonce(q, k, queue, 0.2), rel=1e-3)
