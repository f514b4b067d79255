"""Measure what DCAL costs on top of its plain timm ViT backbone: parameters, FLOPs, inference, training.

Configurations:
  cpu-small  vit_tiny_patch16_224 cut to 6 blocks at 112 px (the cpu-small training preset)
  vit-b      vit_base_patch16_224 at 448 px, batch 1, inference only (224 px with --quick)

Reported side by side:
  - parameters of the plain backbone and of the DCAL inference model, which is
    the backbone plus the GLCA block, its norm and the BN necks. The
    verification head is counted separately, and the training-only identity
    classifiers are left out;
  - FLOPs per image from torch.utils.flop_counter (matrix products and
    convolutions only: norms, softmax and GELU are not counted);
  - inference images/s of timm's ``forward_features`` (fused SDPA attention),
    DCAL's SA stream (explicit attention, whose probabilities feed rollout),
    attention rollout alone, and the full DCAL ``embed``;
  - training step time (forward, backward, gradient clipping, AdamW step) of
    the cpu-small preset at batch 16 = 4 identities x 4 images, for plain
    (no GLCA, no PWCA), +GLCA and full DCAL (GLCA + PWCA over every block),
    in float32 and under bfloat16 autocast.

Timed candidates run interleaved (see common.interleaved_timings), so the
ratios are paired per round and hold up on a shared machine better than the
absolute times do. Inputs are random tensors and weights are random: neither
changes the cost of a forward or backward pass. Times are printed, never
asserted.

Usage:
  python benchmarks/bench_model.py --quick      # about 1-3 minutes on 2 cores
  python benchmarks/bench_model.py              # full run, several minutes
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import (
    default_output,
    describe_machine,
    format_machine,
    format_median_iqr,
    interleaved_timings,
    markdown_table,
    paired_ratios,
    summarize,
    write_json,
)
from dcal.model import DCALConfig, DCALModel, class_token_rollout
from dcal.training.build import build_optimizer
from dcal.training.objective import DCALObjective

PACKAGES = ("torch", "timm", "faiss-cpu", "numpy", "dcal")

CPU_SMALL = dict(backbone="vit_tiny_patch16_224", img_size=112, depth=6)
VIT_B = dict(backbone="vit_base_patch16_224")

# Training settings of the cpu-small preset (dcal/training/config.py).
LABEL_SMOOTHING = 0.1
TRIPLET_MARGIN = 0.3
TWIN_WEIGHT = 2.0
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
DROP_PATH_RATE = 0.05
CLIP_GRAD = 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and ViT-B at 224 px instead of 448 px (about 1-3 minutes)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--batch", type=int, default=32,
                        help="inference batch size for the cpu-small configuration (default 32)")

    parser.add_argument("--identities", type=int, default=4, help="identities per training batch (default 4)")
    parser.add_argument("--images-per-identity", type=int, default=4,
                        help="images per identity in a training batch (default 4)")
    parser.add_argument("--num-classes", type=int, default=1000,
                        help="identity classes of the training classifiers (default 1000)")
    parser.add_argument("--vitb-size", type=int, default=None,
                        help="ViT-B input size in pixels (default 448, or 224 with --quick)")
    parser.add_argument("--skip-vitb", action="store_true", help="measure only the cpu-small configuration")

    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed rounds (default 1 quick, 2 full; ViT-B always 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 4 quick, 20 full)")
    parser.add_argument("--vitb-repeats", type=int, default=None,
                        help="timed rounds for ViT-B inference (default 3 quick, 10 full)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON result file (default benchmarks/results/bench_model.json, "
                             "or bench_model-quick.json with --quick)")
    args = parser.parse_args()

    # Options left unset take the quick or the full default.
    quick_or_full = {"warmup": (1, 2), "repeats": (4, 20), "vitb_repeats": (3, 10), "vitb_size": (224, 448)}
    for name, (quick_value, full_value) in quick_or_full.items():
        if getattr(args, name) is None:
            setattr(args, name, quick_value if args.quick else full_value)
    if args.output is None:
        args.output = default_output("bench_model", args.quick)
    return args


# --------------------------------------------------------------- parameters

def count_parameters(*modules: torch.nn.Module | None) -> int:
    return sum(p.numel() for module in modules if module is not None for p in module.parameters())


def parameter_report(model: DCALModel) -> dict:
    """Count the parameters of each part of an inference model (built with num_classes=0)."""
    backbone = count_parameters(model.backbone)
    glca = count_parameters(model.glca, model.glca_norm)
    necks = count_parameters(model.sa_neck, model.glca_neck)
    embedding_model = backbone + glca + necks
    return {
        "backbone": backbone,
        "glca_block_and_norm": glca,
        "bn_necks": necks,
        "embedding_model": embedding_model,
        "embedding_model_over_backbone": embedding_model / backbone,
        "verification_head": count_parameters(model.head),
        "embedding_dim": model.embed_dim,
    }


# -------------------------------------------------------------------- FLOPs

def count_flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


@contextlib.contextmanager
def unfused_attention(backbone: torch.nn.Module):
    """Switch timm's blocks to explicit attention for the duration of the block.

    FlopCounterMode in torch 2.x counts the CUDA SDPA kernels but not the CPU
    one (aten._scaled_dot_product_flash_attention_for_cpu), so on the CPU the
    fused path would report no attention FLOPs. The explicit path computes the
    same products, so it gives the plain backbone's true count.
    """
    previous = [block.attn.fused_attn for block in backbone.blocks]
    for block in backbone.blocks:
        block.attn.fused_attn = False
    try:
        yield
    finally:
        for block, fused in zip(backbone.blocks, previous):
            block.attn.fused_attn = fused


@torch.inference_mode()
def flop_report(model: DCALModel, img_size: int) -> dict:
    """Count FLOPs per image of the plain backbone and of each DCAL inference stage, at batch 1."""
    image = torch.randn(1, 3, img_size, img_size)
    with unfused_attention(model.backbone):
        plain = count_flops(lambda: model.backbone.forward_features(image))
    sa = count_flops(lambda: model.forward_sa(image))
    _, _, attentions = model.forward_sa(image)
    rollout = count_flops(lambda: class_token_rollout(attentions))
    embed = count_flops(lambda: model.embed(image))
    return {
        "plain_backbone": plain,
        "sa_stream": sa,
        "attention_rollout": rollout,
        # The rest of embed: GLCA block, its norm, the BN necks and the normalisation.
        "glca_and_necks": embed - sa - rollout,
        "dcal_embed": embed,
        "dcal_embed_over_plain": embed / plain,
        "dcal_embed_without_rollout_over_plain": (embed - rollout) / plain,
    }


# ---------------------------------------------------------------- inference

def inference_report(model: DCALModel, img_size: int, batch: int, warmup: int, repeats: int) -> dict:
    """Time the plain backbone and the DCAL inference stages, interleaved, under inference_mode."""
    images = torch.randn(batch, 3, img_size, img_size)
    with torch.inference_mode():
        _, _, attentions = model.forward_sa(images)
        candidates = {
            "plain": lambda: model.backbone.forward_features(images),
            "sa": lambda: model.forward_sa(images),
            # Rollout alone, on attention maps kept from one SA pass.
            "rollout": lambda: class_token_rollout(attentions),
            "embed": lambda: model.embed(images),
        }
        timings = interleaved_timings(candidates, warmup, repeats)

    return {
        "batch": batch,
        "img_size": img_size,
        "fused_attention_in_plain": all(block.attn.fused_attn for block in model.backbone.blocks),
        "seconds": timings,
        "seconds_summary": {clock: {name: summarize(values) for name, values in by_name.items()}
                            for clock, by_name in timings.items()},
        "images_per_second": {name: summarize([batch / t for t in values])
                              for name, values in timings["wall"].items() if name != "rollout"},
        "ratios": {clock: inference_ratios(by_name) for clock, by_name in timings.items()},
    }


def inference_ratios(seconds: dict[str, list[float]]) -> dict:
    """Compute the ratios of one clock; overheads are fractions of the plain backbone's time.

    Two estimates: the median of the per-round ratios, and the ratio of each
    candidate's fastest run. Other jobs only ever add time, so the fastest run
    is the closest to the cost on an idle machine.
    """
    plain, sa, embed, rollout = seconds["plain"], seconds["sa"], seconds["embed"], seconds["rollout"]
    per_round = {
        "embed_over_plain": paired_ratios(seconds, "embed", "plain"),
        "explicit_attention_overhead": [s / p - 1 for s, p in zip(sa, plain)],
        "glca_path_overhead": [(e - s) / p for e, s, p in zip(embed, sa, plain)],
        "rollout_overhead": paired_ratios(seconds, "rollout", "plain"),
    }
    fastest = {
        "embed_over_plain": min(embed) / min(plain),
        "explicit_attention_overhead": min(sa) / min(plain) - 1,
        "glca_path_overhead": (min(embed) - min(sa)) / min(plain),
        "rollout_overhead": min(rollout) / min(plain),
    }
    return {"median_of_rounds": {name: summarize(values) for name, values in per_round.items()},
            "fastest_runs": fastest}


# ----------------------------------------------------------------- training

TRAINING_VARIANTS = {
    "plain": dict(glca_blocks=0, pwca_blocks=0),
    "glca": dict(glca_blocks=1, pwca_blocks=0),
    "full": dict(glca_blocks=1, pwca_blocks=None),
}


def make_training_step(variant: str, dtype: torch.dtype, args: argparse.Namespace,
                       images: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor):
    """Build one training setup and return a function that runs one optimiser step."""
    torch.manual_seed(args.seed)
    config = DCALConfig(**CPU_SMALL, **TRAINING_VARIANTS[variant], num_classes=args.num_classes,
                        drop_path_rate=DROP_PATH_RATE)
    objective = DCALObjective(DCALModel(config), LABEL_SMOOTHING, TRIPLET_MARGIN, TWIN_WEIGHT, twin_of={})
    objective.train()
    optimizer = build_optimizer(objective, LEARNING_RATE, WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(args.seed)
    use_partner = partner if variant == "full" else None
    autocast = dtype != torch.float32

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses = objective(images, labels, use_partner, generator)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), CLIP_GRAD)
        optimizer.step()

    return step


def training_report(args: argparse.Namespace) -> dict:
    """Time training steps of the three variants in float32 and bfloat16 autocast, all interleaved."""
    batch = args.identities * args.images_per_identity
    size = CPU_SMALL["img_size"]
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.arange(args.identities).repeat_interleave(args.images_per_identity)
    # Rolling by one identity's worth of images gives every image a partner of another identity.
    partner = torch.roll(torch.arange(batch), args.images_per_identity)

    candidates = {}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for variant in TRAINING_VARIANTS:
            candidates[f"{variant}_{dtype_name}"] = make_training_step(variant, dtype, args, images, labels, partner)
    timings = interleaved_timings(candidates, args.warmup, args.repeats)
    ratios = {clock: training_ratios(by_name) for clock, by_name in timings.items()}
    return {
        "batch": batch,
        "identities": args.identities,
        "images_per_identity": args.images_per_identity,
        "img_size": size,
        "num_classes": args.num_classes,
        "seconds": timings,
        "seconds_summary": {clock: {name: summarize(values) for name, values in by_name.items()}
                            for clock, by_name in timings.items()},
        "ratios": ratios,
    }


def training_ratios(seconds: dict[str, list[float]]) -> dict:
    """Compute the ratios of one clock: each variant against plain, and bf16 against fp32.

    As in :func:`inference_ratios`, both the median of the per-round ratios
    and the ratio of the fastest runs are kept.
    """
    pairs = {}
    for dtype_name in ("fp32", "bf16"):
        for variant in ("glca", "full"):
            pairs[f"{variant}_over_plain_{dtype_name}"] = (f"{variant}_{dtype_name}", f"plain_{dtype_name}")
    for variant in TRAINING_VARIANTS:
        pairs[f"bf16_over_fp32_{variant}"] = (f"{variant}_bf16", f"{variant}_fp32")
    return {
        "median_of_rounds": {name: summarize(paired_ratios(seconds, a, b)) for name, (a, b) in pairs.items()},
        "fastest_runs": {name: min(seconds[a]) / min(seconds[b]) for name, (a, b) in pairs.items()},
    }


# ------------------------------------------------------------------- tables

def build_tables(results: dict) -> dict[str, tuple[list[str], list[list]]]:
    """Turn the results into markdown tables, as name -> (headers, rows)."""
    configs = results["configs"]
    tables = {}

    rows = []
    for name, config in configs.items():
        p = config["parameters"]
        rows.append([name, f"{p['backbone'] / 1e6:.3f}", f"{p['glca_block_and_norm'] / 1e6:.3f}",
                     f"{p['bn_necks'] / 1e3:.1f}", f"{p['embedding_model'] / 1e6:.3f}",
                     f"+{(p['embedding_model_over_backbone'] - 1) * 100:.1f}%",
                     f"{p['verification_head'] / 1e6:.3f}", p["embedding_dim"]])
    tables["parameters"] = (["config", "backbone (M)", "GLCA block + norm (M)", "BN necks (k)",
                             "DCAL inference model (M)", "DCAL vs backbone", "verification head (M)",
                             "embedding dim"], rows)

    rows = []
    for name, config in configs.items():
        f = config["flops"]
        rows.append([name, config["img_size"], f"{f['plain_backbone'] / 1e9:.3f}", f"{f['sa_stream'] / 1e9:.3f}",
                     f"{f['attention_rollout'] / 1e9:.3f}", f"{f['glca_and_necks'] / 1e9:.3f}",
                     f"{f['dcal_embed'] / 1e9:.3f}", f"+{(f['dcal_embed_over_plain'] - 1) * 100:.1f}%",
                     f"+{(f['dcal_embed_without_rollout_over_plain'] - 1) * 100:.1f}%"])
    tables["flops"] = (["config", "px", "plain backbone", "SA stream", "rollout", "GLCA + necks", "DCAL embed",
                        "DCAL vs plain", "DCAL without rollout vs plain"], rows)

    rows = []
    for name, config in configs.items():
        inference = config["inference"]
        ips = inference["images_per_second"]
        cells = [f"{format_median_iqr(ips[key], 1)}, best {ips[key]['max']:.1f}" for key in ("plain", "sa", "embed")]
        rows.append([name, inference["batch"], *cells])
    tables["inference"] = (["config", "batch", "plain img/s", "SA stream img/s", "DCAL embed img/s"], rows)

    rows = []
    overheads = ("explicit_attention_overhead", "glca_path_overhead", "rollout_overhead")
    for name, config in configs.items():
        for clock in ("wall", "cpu"):
            median = config["inference"]["ratios"][clock]["median_of_rounds"]
            rows.append([name, clock, "median of rounds", format_median_iqr(median["embed_over_plain"], 3),
                         *(f"{median[key]['median'] * 100:+.1f}%" for key in overheads)])
            fastest = config["inference"]["ratios"][clock]["fastest_runs"]
            rows.append([name, clock, "fastest runs", f"{fastest['embed_over_plain']:.3f}",
                         *(f"{fastest[key] * 100:+.1f}%" for key in overheads)])
    tables["overheads"] = (["config", "clock", "estimate", "DCAL embed / plain", "explicit attention", "GLCA path",
                            "of which rollout"], rows)

    train = results.get("training")
    if train:
        rows = []
        summary = train["seconds_summary"]["wall"]
        wall, cpu = train["ratios"]["wall"]["median_of_rounds"], train["ratios"]["cpu"]["median_of_rounds"]
        fastest = train["ratios"]["wall"]["fastest_runs"]
        for dtype_name in ("fp32", "bf16"):
            for variant in TRAINING_VARIANTS:
                if variant == "plain":
                    versus_plain = ["1 (baseline)"] * 3
                else:
                    key = f"{variant}_over_plain_{dtype_name}"
                    versus_plain = [format_median_iqr(wall[key], 3), format_median_iqr(cpu[key], 3),
                                    f"{fastest[key]:.3f}"]
                rows.append([variant, dtype_name, format_median_iqr(summary[f"{variant}_{dtype_name}"], 1, 1e3),
                             f"{min(train['seconds']['wall'][f'{variant}_{dtype_name}']) * 1e3:.1f}",
                             *versus_plain, format_median_iqr(wall[f"bf16_over_fp32_{variant}"], 3)])
        tables["training"] = (["variant", "dtype", "ms per step (wall)", "fastest ms", "vs plain (wall)",
                               "vs plain (CPU time)", "vs plain (fastest runs)", "bf16 / fp32 (wall)"], rows)
    return tables


# --------------------------------------------------------------------- main

def measure_config(name: str, config_fields: dict, img_size: int, batch: int, warmup: int, repeats: int,
                   seed: int) -> dict:
    torch.manual_seed(seed)
    fields = {**config_fields, "img_size": img_size}
    model = DCALModel(DCALConfig(**fields, num_classes=0)).eval()
    print(f"[{name}] counting parameters and FLOPs", flush=True)
    result = {"model_config": fields, "img_size": img_size,
              "parameters": parameter_report(model), "flops": flop_report(model, img_size)}
    print(f"[{name}] timing inference: batch {batch}, {warmup} warm-up + {repeats} timed rounds", flush=True)
    result["inference"] = inference_report(model, img_size, batch, warmup, repeats)
    return result


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = describe_machine(PACKAGES, threads=torch.get_num_threads(), dtype="float32 (training also bf16)",
                               inference_batch_cpu_small=args.batch, inference_batch_vit_b=1,
                               training_batch=args.identities * args.images_per_identity,
                               warmup=args.warmup, repeats=args.repeats, vitb_repeats=args.vitb_repeats,
                               quick=args.quick)

    results = {"machine": machine, "configs": {}}
    results["configs"]["cpu-small"] = measure_config("cpu-small", CPU_SMALL, CPU_SMALL["img_size"], args.batch,
                                                     args.warmup, args.repeats, args.seed)
    if not args.skip_vitb:
        results["configs"]["vit-b"] = measure_config("vit-b", VIT_B, args.vitb_size, 1, 1, args.vitb_repeats,
                                                     args.seed)
    print(f"[training] timing cpu-small steps: {args.warmup} warm-up + {args.repeats} timed rounds", flush=True)
    results["training"] = training_report(args)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_seconds"] = time.perf_counter() - started

    tables = build_tables(results)
    write_json(args.output, results)

    print()
    print(format_machine(machine))
    print(f"- load average at end: {results['machine']['load_average_at_end']}; "
          f"wall time {results['wall_seconds']:.0f} s")
    titles = {
        "parameters": "Parameters (identity classifiers excluded)",
        "flops": "GFLOPs per image (matrix products and convolutions)",
        "inference": "Inference throughput, wall clock (median, IQR in brackets, and the fastest round)",
        "overheads": "Inference time against the plain backbone (median of per-round ratios with IQR, or ratio "
                     "of the fastest runs); overheads as a share of the plain time",
        "training": "Training step, cpu-small, forward + backward + clip + AdamW (median, IQR)",
    }
    for name, (headers, rows) in tables.items():
        print(f"\n### {titles[name]}\n")
        print(markdown_table(headers, rows))
    print(f"\nresults written to {args.output}")


if __name__ == "__main__":
    main()
