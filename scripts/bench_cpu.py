#!/usr/bin/env python3
"""CPU speed against PyTorch, side by side on this machine, in one run.

For each geometry: `brainsam bench` (encoder forward, batch 1; decoder for one point; a LoRA
step) on each CPU backend asked for, then the same three measurements with Meta's
`segment_anything` modules in PyTorch eager fp32 on as many threads as the machine has
cores, and the ratio (PyTorch time / ours: above 1 means we are faster). Then the trainer's
throughput with the bundled model's recipe (weights/manifest.json) for a few steps.

The LoRA step on both sides: frozen encoder, rank-4 adapters on q and v, prompt encoder and
mask decoder trained, one box per image, AdamW. Losses differ (ours: the trainer's Dice +
BCE + IoU head; PyTorch: BCE on the low-res logits): the loss is a sliver of the step.

Usage (README venv): .venv/bin/python scripts/bench_cpu.py [--backends flex,libtorch]
    [--geometries bundled,vit_b] [--size 256] [--batch 2] [--reps 5] [--train-steps 20]
Build first: cargo build --release -p brainsam [--features ndarray]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def geometry(name):
    if name == "bundled":
        return json.loads((ROOT / "weights/manifest.json").read_text())["geometry"]
    presets = {"vit_b": (768, 12, 12, [2, 5, 8, 11])}
    d, depth, heads, glob = presets[name]
    return {"embed_dim": d, "depth": depth, "num_heads": heads, "global_attn_indexes": glob,
            "patch_size": 16, "window_size": 14, "image_size": 1024}


def ours(exe, backend, g, size, batch, reps):
    cmd = [exe, "bench", "--backend", backend, "--geometry", json.dumps(g), "--sizes", str(size),
           "--train", f"{size}x{batch}", "--reps", str(reps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows[r["what"]] = r["ms"]
    return rows


def median_ms(fn, warm, reps):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def torch_rows(g, size, batch, reps):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder,
                                           TwoWayTransformer)

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    patch = g["patch_size"]
    grid = size // patch
    encoder = ImageEncoderViT(
        img_size=size, patch_size=patch, embed_dim=g["embed_dim"], depth=g["depth"],
        num_heads=g["num_heads"], mlp_ratio=4, out_chans=256, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        window_size=g["window_size"], global_attn_indexes=tuple(g["global_attn_indexes"]))
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                           input_image_size=(size, size), mask_in_chans=16)
    decoder = MaskDecoder(
        transformer_dim=256, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8))
    rows = {}
    image = torch.randn(1, 3, size, size)
    with torch.no_grad():
        rows["encoder_fwd_b1"] = median_ms(lambda: encoder(image), 1, reps)
        emb = encoder(image)
        point = (torch.tensor([[[0.4 * size, 0.6 * size]]]), torch.ones(1, 1))

        def decode():
            sparse, dense = prompt(points=point, boxes=None, masks=None)
            decoder(image_embeddings=emb, image_pe=prompt.get_dense_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                    multimask_output=True)
        rows["decoder_per_prompt"] = median_ms(decode, 2, max(reps, 10))

    # LoRA on q and v of every block's fused qkv projection, B initialised to zero.
    class QkvLora(nn.Module):
        def __init__(self, qkv, rank=4):
            super().__init__()
            d = qkv.in_features
            self.qkv = qkv
            self.down = nn.ModuleList(nn.Linear(d, rank, bias=False) for _ in range(2))
            self.up = nn.ModuleList(nn.Linear(rank, d, bias=False) for _ in range(2))
            for u in self.up:
                nn.init.zeros_(u.weight)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q = q + self.up[0](self.down[0](x))
            v = v + self.up[1](self.down[1](x))
            return torch.cat([q, k, v], dim=-1)

    encoder.requires_grad_(False)
    for block in encoder.blocks:
        block.attn.qkv = QkvLora(block.attn.qkv)
    trained = [p for m in (encoder, prompt, decoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=1e-4)
    images = torch.randn(batch, 3, size, size)
    targets = (torch.rand(batch, 1, 4 * grid, 4 * grid) > 0.5).float()
    box = torch.tensor([[0.1, 0.1, 0.3, 0.3]]) * size

    def step():
        emb = encoder(images)
        loss = 0.0
        for i in range(batch):
            sparse, dense = prompt(points=None, boxes=box, masks=None)
            logits, _ = decoder(image_embeddings=emb[i:i + 1], image_pe=prompt.get_dense_pe(),
                                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                multimask_output=False)
            loss = loss + F.binary_cross_entropy_with_logits(logits, targets[i:i + 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    rows["lora_train_step"] = median_ms(step, 1, reps)
    return rows


def data_dir():
    for d in (os.environ.get("BRAINSAM_DATA"), ROOT.parent / "shared/data"):
        if d and (Path(d) / "label_maps").is_dir():
            return Path(d) / "label_maps"
    return ROOT / "tests/data/label_maps"


def trainer_rate(exe, backend, steps):
    """slices/s of `brainsam train` with the bundled model's recipe, from its log."""
    r = json.loads((ROOT / "weights/manifest.json").read_text())["recipe"]
    s = r["sampler"]
    with tempfile.TemporaryDirectory() as out:
        cmd = [exe, "train", "--model", str(ROOT / "weights/brainsam-default.safetensors"),
               "--full", "--label-maps", str(data_dir()), "--out", out,
               "--backend", backend, "--steps", str(steps), "--seed", str(r["seed"]),
               "--contrasts", ",".join(r["contrasts"]),
               "--slices-per-step", str(r["slices_per_step"]),
               "--slices-per-volume", str(r["slices_per_volume"]),
               "--prompts-per-slice", str(s["prompts_per_slice"]),
               "--point-prob", str(s["point_prob"]), "--neighbour-prob", str(s["neighbour_prob"]),
               "--focus-prob", str(s["focus_prob"]), "--correction-prob", str(r["correction_prob"]),
               "--lr", str(r["lr"]), "--warmup", str(r["warmup_steps"]),
               "--data-threads", str(r["data_threads"]), "--checkpoint-every", str(steps + 1)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        logs = sorted(Path(out).glob("**/*.csv"))
        last = logs[-1].read_text().strip().splitlines()[-1]
        return float(last.split(",")[3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brainsam", default=str(ROOT / "target/release/brainsam"))
    ap.add_argument("--backends", default="cpu")
    ap.add_argument("--geometries", default="bundled,vit_b")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=20, help="0 skips the trainer line")
    a = ap.parse_args()
    backends = a.backends.split(",")
    import torch
    print(f"# {os.cpu_count()} cores; PyTorch {torch.__version__} eager fp32, "
          f"{os.cpu_count()} threads; {time.strftime('%Y-%m-%d %H:%M')}")
    head = " | ".join(f"{b} ms" for b in backends)
    ratios = " | ".join(f"PyTorch / {b}" for b in backends)
    print(f"| shape | {head} | PyTorch ms | {ratios} |")
    print("|---" * (2 + 2 * len(backends)) + "|")
    names = {"encoder_fwd_b1": "encoder forward, batch 1",
             "decoder_per_prompt": "decoder, one point",
             "lora_train_step": f"LoRA step {a.size}² × {a.batch}"}
    for gname in a.geometries.split(","):
        g = geometry(gname)
        mine = {b: ours(a.brainsam, b, g, a.size, a.batch, a.reps) for b in backends}
        theirs = torch_rows(g, a.size, a.batch, a.reps)
        for what, label in names.items():
            t = theirs[what]
            cells = " | ".join(f"{mine[b][what]:.1f}" for b in backends)
            rs = " | ".join(f"{t / mine[b][what]:.2f}×" for b in backends)
            print(f"| {gname} {a.size} px: {label} | {cells} | {t:.1f} | {rs} |", flush=True)
    if a.train_steps > 0:
        for b in backends:
            rate = trainer_rate(a.brainsam, b, a.train_steps)
            print(f"trainer, bundled recipe, {b}: {rate:.2f} slices/s ({a.train_steps} steps)")


if __name__ == "__main__":
    sys.exit(main())
