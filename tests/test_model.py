"""DCAL model: SA equivalence with timm, rollout, GLCA, PWCA, head, checkpoints."""
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from dcal.model import (DCALConfig, DCALModel, attention_rollout, class_token_rollout, load_checkpoint,
                        save_checkpoint)
from dcal.model.checkpoint import resolve_checkpoint_dir
from dcal.model.rollout import select_local_tokens


def make_model(backbone="vit_tiny_patch16_224", img_size=64, seed=0, **kwargs):
    torch.manual_seed(seed)
    return DCALModel(DCALConfig(backbone=backbone, img_size=img_size, **kwargs)).eval()


@pytest.mark.parametrize("backbone", ["vit_tiny_patch16_224", "vit_small_patch16_224", "deit_tiny_patch16_224"])
@pytest.mark.parametrize("img_size", [48, 96])
def test_sa_class_token_matches_timm(backbone, img_size):
    model = make_model(backbone, img_size, glca_blocks=0, pwca_blocks=0)
    images = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        expected = model.backbone.forward_features(images)[:, 0]
        tokens, _, _ = model.forward_sa(images)
    torch.testing.assert_close(tokens[:, 0], expected, atol=1e-5, rtol=1e-5)


def test_448_px_has_785_tokens():
    model = make_model("vit_tiny_patch16_224", 448)
    with torch.no_grad():
        tokens, hidden, attentions = model.forward_sa(torch.randn(1, 3, 448, 448))
    assert tokens.shape == (1, 785, 192)
    assert attentions[0].shape == (1, 3, 785, 785)


def test_sa_matches_timm_with_pretrained_file(tmp_path):
    """Weights loaded from a local file reach the SA stream unchanged, even at another input size."""
    torch.manual_seed(1)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0)
    path = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))

    model = make_model("vit_tiny_patch16_224", 224, weights=str(path), glca_blocks=0)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_sa(images)[0][:, 0], source.forward_features(images)[:, 0],
                                   atol=1e-5, rtol=1e-5)
    resized = make_model("vit_tiny_patch16_224", 112, weights=str(path))
    assert resized.backbone.pos_embed.shape == (1, 50, 192)


def test_pth_weights_load_same_as_safetensors(tmp_path):
    torch.manual_seed(2)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    a = make_model("vit_tiny_patch16_224", 64, weights=str(tmp_path / "w.pth"))
    b = make_model("vit_tiny_patch16_224", 64, weights=str(tmp_path / "w.safetensors"))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a.forward_sa(images)[0], b.forward_sa(images)[0])


def test_hub_weights_offline_fail_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ValueError, match="vit_tiny_patch16_224.*weights"):
        DCALModel(DCALConfig(backbone="vit_tiny_patch16_224", img_size=64, weights="timm"))
    assert time.monotonic() - start < 10


def test_hub_unreachable_fails_fast(monkeypatch):
    """Without HF_HUB_OFFLINE, an unreachable hub is detected by one short connection attempt (loopback here)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(ValueError, match="127.0.0.1:9 is unreachable"):
        DCALModel(DCALConfig(backbone="vit_tiny_patch16_224", img_size=64, weights="timm"))
    assert time.monotonic() - start < 10


def test_missing_weights_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        make_model(weights=str(tmp_path / "nope.safetensors"))


def test_unknown_backbone_rejected():
    with pytest.raises(ValueError, match="unknown timm model"):
        make_model("vit_nonexistent_patch16")


def test_rollout_matches_hand_computation():
    a1 = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    a2 = torch.tensor([[0.3, 0.3, 0.4], [0.0, 1.0, 0.0], [0.5, 0.25, 0.25]])
    # Two heads per block whose mean is a1 (resp. a2).
    h1 = torch.stack([a1 + 0.1 * torch.tensor([[1, -1, 0], [0, 0, 0], [0, 0, 0]]),
                      a1 - 0.1 * torch.tensor([[1, -1, 0], [0, 0, 0], [0, 0, 0]])])
    h2 = torch.stack([a2, a2])
    eye = torch.eye(3)
    expected = (0.5 * a2 + 0.5 * eye) @ (0.5 * a1 + 0.5 * eye)
    result = attention_rollout([h1[None], h2[None]])
    torch.testing.assert_close(result[0], expected)
    torch.testing.assert_close(result[0].sum(-1), torch.ones(3))


def test_class_token_rollout_equals_row_zero():
    torch.manual_seed(4)
    attentions = [torch.rand(2, 3, 17, 17).softmax(-1) for _ in range(5)]
    full = attention_rollout(attentions)
    row = class_token_rollout(attentions)
    torch.testing.assert_close(row[:, 0], full[:, 0])


def test_top_r_picks_highest_and_keeps_class_token():
    rollout = torch.zeros(1, 11, 11)
    rollout[0, 0] = torch.tensor([0.9, 0.01, 0.5, 0.02, 0.3, 0.03, 0.04, 0.05, 0.2, 0.06, 0.07])
    index = select_local_tokens(rollout, ratio=0.3)  # ceil(0.3 * 10 patches) = 3
    assert index.tolist() == [[0, 2, 4, 8]]


def test_top_r_ratio_one_keeps_all():
    index = select_local_tokens(torch.rand(2, 5, 5), ratio=1.0)
    assert index.shape == (2, 5)
    assert (index[:, 0] == 0).all()


def test_pwca_adds_no_parameters():
    with_pwca = make_model(pwca_blocks=None)
    without = make_model(pwca_blocks=0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(with_pwca) == count(without)


def test_pwca_changes_training_path_only():
    model = make_model(num_classes=5, drop_path_rate=0.0)
    images = torch.randn(4, 3, 64, 64)
    partner = torch.tensor([1, 0, 3, 2])
    model.train()
    with torch.no_grad():
        with_partner = model(images, partner)
        without_partner = model(images)
    assert "pwca_logits" in with_partner
    assert "pwca_logits" not in without_partner
    assert not torch.allclose(with_partner["pwca_logits"], with_partner["sa_logits"])

    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images, partner)["embedding"], model.embed(images))


def test_pwca_keeps_bn_running_stats():
    model = make_model(num_classes=5)
    model.train()
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        model(images)
        stats = model.sa_neck.bn.running_mean.clone()
    model2 = make_model(num_classes=5)
    model2.train()
    with torch.no_grad():
        model2(images, torch.tensor([1, 0, 3, 2]))
    torch.testing.assert_close(model2.sa_neck.bn.running_mean, stats)


def test_glca_changes_embedding():
    model = make_model()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        full = model.embed(images)
        sa_only = model.embed(images, parts="sa")
        glca_only = model.embed(images, parts="glca")
    assert full.shape == (3, 2 * 192)
    assert sa_only.shape == (3, 192)
    assert not torch.allclose(torch.nn.functional.normalize(glca_only), torch.nn.functional.normalize(sa_only))


def test_glca_depends_on_selected_tokens():
    model = make_model(local_ratio=0.1)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        narrow = model.embed(images, parts="glca")
        model.config.local_ratio = 1.0
        wide = model.embed(images, parts="glca")
    assert not torch.allclose(narrow, wide)


def test_glca_parameter_overhead():
    model = make_model(glca_blocks=1)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    glca = sum(p.numel() for p in model.glca.parameters()) + sum(p.numel() for p in model.glca_norm.parameters())
    assert 0.05 < glca / backbone < 0.1  # one of 12 blocks, about 8%


def test_head_is_exactly_symmetric():
    model = make_model()
    a = torch.nn.functional.normalize(torch.randn(16, model.embed_dim), dim=1)
    b = torch.nn.functional.normalize(torch.randn(16, model.embed_dim), dim=1)
    with torch.no_grad():
        assert torch.equal(model.verify_logits(a, b), model.verify_logits(b, a))


def test_save_load_bit_identical(tmp_path):
    model = make_model(num_classes=7)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model.embed(images)
    fingerprint = save_checkpoint(model, tmp_path / "ckpt", extra={"thresholds": {"head": {"eer": 0.4}}})
    loaded, config = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        after = loaded.embed(images)
    assert torch.equal(before, after)
    assert config["fingerprint"] == fingerprint
    assert config["thresholds"]["head"]["eer"] == 0.4
    assert not any(name.startswith("classifiers") for name in loaded.state_dict())


def test_checkpoint_overwrite_is_atomic(tmp_path):
    model = make_model()
    save_checkpoint(model, tmp_path / "ckpt")
    save_checkpoint(make_model(seed=3), tmp_path / "ckpt")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt"]
    assert leftovers == []


def test_checkpoint_fallback_to_old_after_crash(tmp_path):
    """A crash between the two renames leaves only <name>.old; loading still finds it."""
    save_checkpoint(make_model(), tmp_path / "ckpt")
    (tmp_path / "ckpt").rename(tmp_path / "ckpt.old")
    assert resolve_checkpoint_dir(tmp_path / "ckpt") == tmp_path / "ckpt.old"


def test_corrupt_checkpoint_rejected(tmp_path):
    save_checkpoint(make_model(), tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="fingerprint"):
        load_checkpoint(tmp_path / "ckpt")


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dcal checkpoint"):
        load_checkpoint(tmp_path / "missing")
