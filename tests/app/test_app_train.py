"""The Train page: a tiny CPU job started from the form runs to the end in its own process, and
bad combinations are refused with their reason before any run folder exists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import train_form
from app_driver import open_page, rendered, texts
from ssl_core.cli import main
from ssl_core.steps.readiness import explorable, resumable
from ssl_core.workflows import jobs
from ssl_core.workflows.train_request import TrainRequest
from ssl_core.models.methods import METHODS, Method, register_method
from ssl_core.store.run_store import RunStore

JOB_TIMEOUT_S = 120


def fill_tiny_form(at, train_size: int = 64, test_size: int = 32):
    at.selectbox(key="train_method").select("simclr")
    at.selectbox(key="train_backbone").select("convnet")
    at.selectbox(key="train_dataset").select("shapes")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch_size").set_value(32)
    at.number_input(key="train_train_size").set_value(train_size)
    at.number_input(key="train_test_size").set_value(test_size)
    at.radio(key="train_device").set_value("cpu")
    # The Explore page needs embed, project and index; the map's UMAP would cost this test
    # ~15 s in the job's fresh process, so the job embeds and indexes only.
    at.multiselect(key="train_after").set_value(["embed", "index"])
    return at.run()


def test_the_form_starts_a_background_job_that_finishes(runs_dir):
    before = {p.name for p in runs_dir.iterdir()}
    at = fill_tiny_form(open_page("train"))
    assert not at.error, texts(at.error)
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (new_id,) = {p.name for p in runs_dir.iterdir()} - before
    assert any(f"Started run {new_id}" in s for s in texts(at.success))
    run = RunStore(runs_dir).get(new_id)
    config = run.config
    assert (config.method["name"], config.backbone.name, config.data.dataset) == ("simclr", "convnet", "shapes")
    assert (config.data.train_size, config.data.test_size, config.train.epochs, config.train.device) == (64, 32, 1, "cpu")

    # The page returned at once: the job trains in another process, which we wait for here.
    deadline = time.time() + JOB_TIMEOUT_S
    try:
        while (status := run.read_status())["status"] in ("queued", "running") or status.get("stage") != "done":
            assert status["status"] not in ("failed", "interrupted"), (status, (run.path / "train.log").read_text())
            assert time.time() < deadline, f"the job did not finish in {JOB_TIMEOUT_S} s: {status}"
            time.sleep(0.5)
    finally:
        status = run.read_status()
        if status["status"] in ("queued", "running") and isinstance(status.get("pid"), int):
            os.kill(status["pid"], signal.SIGTERM)  # the job this test started, by its pid
    assert run.index_path.exists() and not run.projection_dir.exists()

    at.run()  # the follow panel now shows the finished run with its curves
    assert at.selectbox(key="train_run_picker").value == new_id
    assert any(f"**{new_id}** · status **finished**" in m for m in texts(at.markdown))
    assert at.button(key="train_cancel").disabled and at.button(key="train_resume").disabled
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # loss / kNN curves


def wait_for(run, done, what: str, timeout: float = JOB_TIMEOUT_S) -> dict:
    deadline = time.time() + timeout
    while not done(status := run.read_status()):
        assert time.time() < deadline, f"{what} did not happen in {timeout} s: {status}"
        time.sleep(0.3)
    return status


def test_cancel_stops_the_job_with_a_checkpoint_and_offers_resume(runs_dir):
    at = fill_tiny_form(open_page("train"), train_size=64, test_size=32)
    at.number_input(key="train_epochs").set_value(500).run()  # 1,000 steps: still going when cancelled
    at.button(key="train_start").click().run()
    run = RunStore(runs_dir).get(at.selectbox(key="train_run_picker").value)
    try:
        wait_for(run, lambda s: s["status"] == "running" and s.get("stage") == "train", "training")
        at.run()
        assert not at.button(key="train_cancel").disabled
        at.button(key="train_cancel").click().run()
        status = wait_for(run, lambda s: s["status"] not in ("queued", "running"), "stopping", timeout=60)
    finally:
        status = run.read_status()
        if status["status"] in ("queued", "running") and isinstance(status.get("pid"), int):
            os.kill(status["pid"], signal.SIGTERM)
    assert status["status"] == "interrupted" and 0 < status["step"] < 1000
    assert run.checkpoint_path.exists()
    at.run()
    assert any("resume continues from there" in i for i in texts(at.info)), texts(at.info)
    assert not at.button(key="train_resume").disabled and at.button(key="train_cancel").disabled


@pytest.fixture
def vit_only_method():
    """A throwaway method that trains only a ViT, to make an incompatible combination."""

    @register_method
    class VitOnly(Method):
        name = "vit_only_test"
        family = "test"
        description = "a method that needs a ViT"
        backbones = ("vit_tiny",)

    yield VitOnly.name
    METHODS.unregister(VitOnly.name)


def test_an_incompatible_backbone_is_refused_with_the_reason_and_no_run(runs_dir, vit_only_method):
    before = sorted(p.name for p in runs_dir.iterdir())
    at = open_page("train")
    at.selectbox(key="train_method").select(vit_only_method)
    at.selectbox(key="train_backbone").select("convnet").run()
    assert any("does not support backbone 'convnet'" in e and "vit_tiny" in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="train_start").disabled
    at.run()
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_a_missing_folder_is_refused(runs_dir, tmp_path):
    at = open_page("train")
    at.selectbox(key="train_dataset").select("(a folder of my images)").run()
    at.text_input(key="train_folder").input(str(tmp_path / "nowhere")).run()
    assert any("no folder at" in e and "nowhere" in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="train_start").disabled


def test_the_page_and_the_cli_refuse_a_bad_request_with_the_same_sentences(runs_dir, tmp_path, capsys):
    nowhere = str(tmp_path / "nowhere")
    expected = TrainRequest(dataset=nowhere, skip=("embed",)).problems()
    assert len(expected) == 2  # no such folder; scores, map and index without the embeddings they read

    at = open_page("train")
    at.selectbox(key="train_dataset").select("(a folder of my images)").run()
    at.text_input(key="train_folder").input(nowhere)
    at.multiselect(key="train_after").set_value(["eval", "project", "index"]).run()
    assert texts(at.error) == [f"Cannot start: {problem}" for problem in expected]
    assert at.button(key="train_start").disabled

    before = sorted(p.name for p in runs_dir.iterdir())
    assert main(["train", "--dataset", nowhere, "--skip", "embed", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == "error: the run cannot start:\n  " + "\n  ".join(expected) + "\n"
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_the_page_and_the_cli_ask_the_same_check(runs_dir, monkeypatch, capsys):
    monkeypatch.setattr(TrainRequest, "problems", lambda request: [f"refused by the one check ({request.method})"])
    at = open_page("train")
    assert texts(at.error) == ["Cannot start: refused by the one check (simclr)"]
    assert at.button(key="train_start").disabled
    assert main(["train", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == "error: refused by the one check (simclr)\n"


@pytest.mark.skipif(train_form.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(runs_dir):
    at = open_page("train")
    at.radio(key="train_device").set_value("cuda").run()
    assert any("no CUDA GPU" in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="train_start").disabled


def test_a_folder_can_be_streamed_from_its_files(runs_dir, tmp_path, monkeypatch):
    from PIL import Image

    for name in ("a/1.png", "b/2.png"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "photos" / name)
    at = open_page("train")
    at.selectbox(key="train_dataset").select("(a folder of my images)").run()
    at.text_input(key="train_folder").input(str(tmp_path / "photos")).run()
    assert at.radio(key="train_load").value == "auto"
    at.radio(key="train_load").set_value("stream").run()
    assert not at.error
    started = []

    def start(store, request):  # what the click would start, without training
        started.append(request.config())
        return store.create(started[-1])

    monkeypatch.setattr(jobs, "start", start)
    at.button(key="train_start").click().run()
    assert [c.data.load for c in started] == ["stream"] and started[0].data.dataset == str(tmp_path / "photos")


def test_online_sets_are_marked_and_offer_a_download(runs_dir):
    at = open_page("train")
    assert "cifar10 (online: needs a download" in at.selectbox(key="train_dataset").format_func("cifar10")
    at.selectbox(key="train_dataset").select("cifar10").run()
    at.checkbox(key="train_download").check().run()
    assert not at.error


def test_the_form_builds_the_config_the_cli_would():
    choices = train_form.TrainChoices(method="supervised", backbone="resnet18", dataset="digits", epochs=3,
                                      batch_size=64, lr=1e-3, seed=7, device="cpu", train_size=100,
                                      after_training=("embed", "eval"))
    config = choices.request().config().to_dict()
    assert config["method"] == {"name": "supervised"} and config["backbone"] == {"name": "resnet18"}
    assert {k: config["data"][k] for k in ("dataset", "train_size", "test_size", "download")} == {
        "dataset": "digits", "train_size": 100, "test_size": None, "download": False}
    assert {k: config["train"][k] for k in ("epochs", "batch_size", "lr", "seed", "device")} == {
        "epochs": 3, "batch_size": 64, "lr": 1e-3, "seed": 7, "device": "cpu"}
    assert choices.skip == ("project", "index")
    assert choices.request().problems() == []
    assert train_form.TrainChoices(after_training=("project",)).request().problems() == [
        "the steps after training read the embeddings: keep 'embed' or skip them all"]


def test_a_read_only_disk_is_one_sentence_and_leaves_no_half_made_run(runs_dir, monkeypatch):
    import errno

    from ssl_core.store import atomic

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    before = sorted(p.name for p in runs_dir.iterdir())
    at = fill_tiny_form(open_page("train"))
    monkeypatch.setattr(atomic, "atomic_write_bytes", read_only)
    at.button(key="train_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [error] = [e for e in texts(at.error) if "Cannot start" in e]
    assert "config.json" in error and "the file system is read-only" in error
    assert sorted(p.name for p in runs_dir.iterdir()) == before, "a folder without a config was left behind"


def test_the_follow_panel_shows_the_status_as_written_with_the_librarys_reasons(run):
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the job, which training has just handed over to its first step
        run.set_status("running", stage="embed", pid=job.pid)
        at = open_page("train", {"run": run.id})
        assert any(f"**{run.id}** · status **running** · embedding the images" in m for m in texts(at.markdown))
        [explore_link] = [link.proto for link in at.get("page_link") if link.proto.label == "Open in Explore"]
        assert explore_link.disabled and rendered(explore_link.help) == explorable(run)
        assert at.button(key="train_resume").disabled and not at.button(key="train_cancel").disabled
        assert rendered(at.button(key="train_resume").help) == resumable(run)  # "... is already running ..."
    finally:
        job.kill()
        job.wait()

    run.set_status("finished", stage="done")
    at.run()
    [explore_link] = [link.proto for link in at.get("page_link") if link.proto.label == "Open in Explore"]
    assert not explore_link.disabled and at.button(key="train_cancel").disabled
    assert rendered(at.button(key="train_resume").help) == resumable(run)  # "... has finished; nothing to resume ..."


def test_rotation_on_shapes_is_refused_until_the_shapes_stand_near_upright(runs_dir):
    at = open_page("train")
    at.selectbox(key="train_method").select("rotation")
    at.selectbox(key="train_dataset").select("shapes").run()
    assert any("rotation prediction cannot learn `shapes`" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    at.slider(key="train_max_rotation").set_value(30).run()
    assert not at.error and not at.button(key="train_start").disabled


def test_an_empty_learning_rate_is_the_methods_recipe(runs_dir):
    recipe = METHODS.get("dino").train_recipe["lr"]
    assert train_form.TrainChoices(method="dino").request().config().train.lr == recipe
    assert train_form.TrainChoices(method="dino", lr=1e-3).request().config().train.lr == 1e-3
    at = open_page("train")
    at.selectbox(key="train_method").select("dino").run()
    assert at.number_input(key="train_lr").value is None
    assert at.number_input(key="train_lr").placeholder == f"{recipe:.1e} (dino's recipe)"


def test_the_follow_panel_charts_the_health_and_says_when_lidar_falls(run):
    assert any("lidar" in m and "alpha_req" in m for m in run.read_metrics()), "training measured its health"
    at = open_page("train", {"run": run.id})
    assert any(c.startswith("LiDAR (label-free") for c in texts(at.caption)) and not at.warning
    run.append_metrics({"step": 99, "epoch": 9.0, "lidar": 3.0, "alpha_req": 0.4,
                        "health_warning": "LiDAR fell to 3.0 from 40.0 (alpha-ReQ 0.40): the embedding may be collapsing"})
    at.run()
    assert any("may be collapsing" in w for w in texts(at.warning)), texts(at.warning)
