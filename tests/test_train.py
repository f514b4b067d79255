"""dcal-train on real LFW faces: DDP, losses, AMP, resume, MLflow."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cli.train import main as train_main
from dcal.training.build import DataArgs
from dcal.training.config import resolve_config
from dcal.training.loop import Trainer, resolve_amp

REPO = Path(__file__).resolve().parents[1]


def run_cli(args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "cli.train", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def mlflow_runs(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        return db.execute("select run_uuid, status from runs").fetchall()


def test_ddp_two_processes_gloo(lfw_subset, lfw_twins, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["--data", lfw_subset, "--twins", lfw_twins, "--out", run_dir, "--preset", "tiny",
                      "--max-steps", "4", "--nproc-per-node", "2", "--device", "cpu"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters identical across 2 processes: True" in result.stderr
    assert (run_dir / "best" / "model.safetensors").is_file()
    assert (run_dir / "last" / "training_state.pt").is_file()
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["best", "last", "mlartifacts"]
    assert len(mlflow_runs(run_dir)) == 1
    config = json.loads((run_dir / "best" / "config.json").read_text())
    assert config["training"]["step"] == 4


def test_unusable_data_stops_before_model(tmp_path):
    data = tmp_path / "faces"
    (data / "only_person").mkdir(parents=True)
    (data / "only_person" / "a.jpg").write_bytes(b"")
    result = CliRunner().invoke(train_main, ["--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"])
    assert result.exit_code != 0
    assert "not usable" in result.output or "Error" in result.output
    assert not (tmp_path / "run").exists()


def make_trainer(data, twins, run_dir, resume=False, **overrides):
    config = resolve_config("tiny", None, overrides)
    return Trainer(config, DataArgs(str(data), str(twins)), run_dir, torch.device("cpu"), resume=resume)


def test_loss_decreases_on_real_faces(lfw_subset, lfw_twins, tmp_path):
    trainer = make_trainer(lfw_subset, lfw_twins, tmp_path / "run", max_steps=60, img_size=32,
                           batches_per_epoch=20, base_lr=3e-3, warmup_epochs=0.0)
    result = trainer.run()
    sa = [loss for _, _, loss in result["losses"]]
    first, last = sum(sa[:10]) / 10, sum(sa[-10:]) / 10
    assert last < first - 0.1, f"identity loss went from {first:.3f} to {last:.3f}"


def test_bf16_autocast_on_cpu(lfw_subset, lfw_twins, tmp_path):
    trainer = make_trainer(lfw_subset, lfw_twins, tmp_path / "run", max_steps=2, amp="bf16")
    result = trainer.run()
    assert result["steps"] == 2
    assert all(loss == loss for _, loss, _ in result["losses"])  # no NaN


def test_fp16_on_cpu_falls_back(caplog):
    dtype, scaler = resolve_amp("fp16", torch.device("cpu"))
    assert dtype == torch.bfloat16
    assert scaler is False
    assert "fp16 autocast needs a CUDA GPU" in caplog.text


def test_resume_after_sigkill_matches(lfw_subset, lfw_twins, tmp_path):
    """A run killed after its first checkpoint and resumed ends in the same state as an uninterrupted one."""
    common = ["--data", lfw_subset, "--twins", lfw_twins, "--preset", "tiny", "--max-steps", "30", "--device", "cpu",
              "--seed", "3"]
    clean = run_cli([*common, "--out", tmp_path / "clean"])
    assert clean.returncode == 0, clean.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "cli.train", *map(str, common), "--out", str(killed_dir)],
                               env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        config = killed_dir / "last" / "config.json"
        if config.is_file() and json.loads(config.read_text())["training"]["step"] >= 5:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads((killed_dir / "last" / "config.json").read_text())["training"]["step"]
    assert state < 30, "the run finished before it could be killed; the test needs a longer run"

    resumed = run_cli([*common, "--out", killed_dir, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(str(tmp_path / "clean" / "last" / "model.safetensors"))
    b = load_file(str(killed_dir / "last" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=f"{name} differs after resume")
    assert len(mlflow_runs(killed_dir)) == 1


def test_mlflow_store_has_metrics(lfw_subset, lfw_twins, tmp_path):
    trainer = make_trainer(lfw_subset, lfw_twins, tmp_path / "run", max_steps=5)
    trainer.run()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    run = client.get_run(trainer.progress.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert "train/loss_total" in run.data.metrics
    assert "val/head_eer" in run.data.metrics
    assert run.data.params["train.backbone"] == "vit_tiny_patch16_224"


def test_unreachable_mlflow_does_not_stop(lfw_subset, lfw_twins, tmp_path, caplog):
    config = resolve_config("tiny", None, {"max_steps": 3})
    start = time.monotonic()
    trainer = Trainer(config, DataArgs(str(lfw_subset), str(lfw_twins)), tmp_path / "run", torch.device("cpu"),
                      mlflow_uri="http://127.0.0.1:9")
    result = trainer.run()
    assert result["steps"] == 3
    assert "MLflow tracking at http://127.0.0.1:9 failed" in caplog.text
    assert time.monotonic() - start < 60
    assert (tmp_path / "run" / "best" / "config.json").is_file()


def test_yaml_and_cli_override_preset(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 7\nimg_size: 48\n")
    config = resolve_config("tiny", path, {"img_size": 64})
    assert config.epochs == 7
    assert config.img_size == 64
    assert config.backbone == "vit_tiny_patch16_224"


def test_yaml_unknown_key_rejected(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epoch: 7\n")
    with pytest.raises(ValueError, match="unknown training options"):
        resolve_config("tiny", path)


def test_batch_size_uses_preset_images_per_identity(tmp_path):
    from cli.train import _apply_batch_size

    config = _apply_batch_size(resolve_config("cpu-small"), 64)
    assert config.images_per_identity == 4
    assert config.identities_per_batch == 16
