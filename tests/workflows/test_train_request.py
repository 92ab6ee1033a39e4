"""TrainRequest: the one check of a training request, for `ssl-explorer train` and the Train page
(tests/app/test_app_train.py checks that both refuse with its sentences)."""

from __future__ import annotations

import pytest

from ssl_core.models.methods import METHODS
from ssl_core.workflows.train_request import TrainRequest
from tiny_runs import tiny_config, tiny_request


def test_a_good_request_has_no_problems_and_makes_the_config_it_describes():
    request = tiny_request(epochs=3)
    assert request.problems() == []
    assert request.config() == tiny_config(epochs=3)


def test_every_problem_is_named_with_the_bad_value(tmp_path):
    request = TrainRequest(method="simclr", backbone="resnet19", dataset=str(tmp_path / "nowhere"),
                           data={"train_size": 0}, train={"epochs": 0, "batch_size": -1, "lr": 0.0},
                           skip=("embed", "eval"))
    problems = request.problems()
    assert problems[0].startswith("unknown backbone 'resnet19'; known:") and "vit_tiny" in problems[0]
    assert f"no folder at '{tmp_path / 'nowhere'}'" in problems[1]
    assert problems[2:] == [
        "train size must be at least 1 (or left out for the dataset's default); got 0",
        "epochs must be at least 1; got 0", "batch size must be at least 1; got -1",
        "learning rate must be positive; got 0.0",
        "the steps after training read the embeddings: keep 'embed' or skip them all"]
    with pytest.raises(ValueError, match="the run cannot start:\n  unknown backbone") as refused:
        request.config()
    assert all(problem in str(refused.value) for problem in problems)


def test_method_settings_and_unknown_fields_are_checked():
    [problem] = TrainRequest(method="simclr", method_settings={"temperatur": 0.5}).problems()
    assert problem.startswith("method 'simclr' has no setting(s) ['temperatur']; settings:") and "'temperature'" in problem
    assert TrainRequest(method="simclr", method_settings={"temperature": 0.5}).problems() == []
    [problem] = TrainRequest(train={"epoch": 2}).problems()
    assert problem.startswith("unknown TrainConfig setting(s) ['epoch']; known:") and "'epochs'" in problem
    assert TrainRequest(skip=("embed", "eval", "project", "index")).problems() == []
    assert TrainRequest(skip=("mapp",)).problems() == [
        "unknown step(s) to skip ['mapp']; steps after training: embed, eval, project, index"]


def test_rotation_on_shapes_at_any_angle_is_refused_with_what_to_do_instead():
    [problem] = TrainRequest(method="rotation", dataset="shapes").problems()
    assert "rotation prediction cannot learn `shapes`" in problem and "--max-rotation 30" in problem
    assert TrainRequest(method="rotation", dataset="shapes", data={"max_rotation": 30}).problems() == []
    assert TrainRequest(method="simclr", dataset="shapes").problems() == []


def test_a_method_trains_with_its_recipe_unless_the_request_sets_the_value(monkeypatch):
    monkeypatch.setattr(METHODS.get("byol"), "train_recipe", {"lr": 7e-4, "weight_decay": 0.04})
    train = TrainRequest(method="byol").config().train
    assert (train.lr, train.weight_decay, train.warmup_epochs) == (7e-4, 0.04, 1.0)  # warm-up: core.config's
    train = TrainRequest(method="byol", train={"lr": 1e-3}).config().train
    assert (train.lr, train.weight_decay) == (1e-3, 0.04)
    assert TrainRequest(method="simclr").config().train.lr == 2e-3  # another method: core.config's


@pytest.mark.parametrize("method", sorted(METHODS.names()))
def test_every_recipe_is_a_valid_train_config(method):
    assert TrainRequest(method=method, backbone="vit_tiny" if method in ("mae", "ijepa") else "convnet",
                        data={"max_rotation": 30}).problems() == []
