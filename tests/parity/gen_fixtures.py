"""Parity fixtures from Meta's `segment_anything` on random weights.

Builds a SAM of the given geometry, fills EVERY tensor of its state dict with random values
(the default init leaves `rel_pos_*` and `pos_embed` at zero, which would hide bugs), runs
`SamPredictor` on a non-square uint8 image and writes one fixture directory per prompt case:

    DIR/<name>/sam.pth            torch.save(model.state_dict())
    DIR/<name>/config.json        {"embed_dim", "depth", "num_heads", "global_attn_indexes", "image_size",
                                   "patch_size", "window_size"}
    DIR/<name>/case.safetensors   image, prompts, expected outputs (see tests/parity/README.md)

Usage:
    python tests/parity/gen_fixtures.py --out tests/fixtures/parity --seed 0 \
        --embed-dim 64 --depth 4 --heads 4 --global 1 3 --image-size 256 --image-hw 150 200
    python tests/parity/gen_fixtures.py --preset vit_b --out /tmp/parity_vit_b --cases points_box
"""
import argparse
import json
import os
from functools import partial

import numpy as np
import torch
from safetensors.numpy import save_file
from segment_anything import SamPredictor
from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                       TwoWayTransformer)

PRESETS = {
    "vit_b": dict(embed_dim=768, depth=12, heads=12, global_attn=[2, 5, 8, 11]),
    "vit_l": dict(embed_dim=1024, depth=24, heads=16, global_attn=[5, 11, 17, 23]),
    "vit_h": dict(embed_dim=1280, depth=32, heads=16, global_attn=[7, 15, 23, 31]),
}


def build_sam(embed_dim, depth, heads, global_attn, image_size, patch=16, window=14):
    # Same construction as segment_anything.build_sam._build_sam, with a free image size,
    # patch and window (Meta's classes take them; the registry fixes 16 and 14).
    prompt_dim = 256
    grid = image_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=patch,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=global_attn, window_size=window,
            out_chans=prompt_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048,
                                          num_heads=8),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def randomise(model, gen):
    """Random values in every tensor, scaled so activations stay O(1)."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            leaf = name.split(".")[-2] if "." in name else name
            if "rel_pos" in name or "pos_embed" in name:
                std = 0.5
            elif "embed" in leaf or "token" in leaf or "gaussian" in name:
                std = 1.0  # prompt embeddings, output tokens, Fourier matrix
            elif p.ndim == 1 and name.endswith("weight"):  # norms: around 1
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
                continue
            elif p.ndim >= 2:
                std = 1.0 / np.sqrt(p[0].numel())
            else:
                std = 0.5  # biases
            p.copy_(std * torch.randn(p.shape, generator=gen))


def make_image(h, w, rng):
    """Smooth blobs plus noise: structure for attention, texture for the resampler."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            s = rng.uniform(0.1, 0.4) * max(h, w)
            img[..., c] += rng.uniform(40, 120) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img += rng.normal(0, 12, img.shape)
    return np.clip(img + 30, 0, 255).astype(np.uint8)


def cases(h, w, rng):
    def pt():
        return [rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)]
    x0, y0 = rng.uniform(0.05 * w, 0.4 * w), rng.uniform(0.05 * h, 0.4 * h)
    box = [x0, y0, x0 + rng.uniform(0.3 * w, 0.55 * w), y0 + rng.uniform(0.3 * h, 0.55 * h)]
    first = pt()
    return {
        "points_multi": dict(points=[pt(), pt()], labels=[1, 0], box=None, multimask=True),
        "point_single": dict(points=[pt()], labels=[1], box=None, multimask=False),
        "box_single": dict(points=None, labels=None, box=box, multimask=False),
        "box_multi": dict(points=None, labels=None, box=box, multimask=True),
        "points_box": dict(points=[pt(), pt(), pt()], labels=[1, 1, 0], box=box, multimask=False),
        # A refining click as the page makes it: the first click's low-res logits go back in.
        "points_mask": dict(points=[first, pt()], labels=[1, 1], box=None, multimask=False,
                            refine=True),
    }


def mask_input(predictor, c):
    """The low-res logits of the case's first point alone, for a refining case (else None)."""
    if not c.get("refine"):
        return None
    with torch.no_grad():
        _, _, low = predictor.predict(point_coords=np.array(c["points"][:1], np.float32),
                                      point_labels=np.array(c["labels"][:1], np.float32),
                                      multimask_output=False)
    return low


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--prefix", default="", help="name prefix of the fixture directories")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--global", dest="global_attn", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--window", type=int, default=14)
    ap.add_argument("--image-hw", type=int, nargs=2, default=[150, 200])
    ap.add_argument("--cases", nargs="+", default=None, help="subset of case names")
    ap.add_argument("--with-input", action="store_true",
                    help="also store the preprocessed input tensor (model and preprocessing apart)")
    a = ap.parse_args()

    geo = dict(embed_dim=a.embed_dim, depth=a.depth, heads=a.heads, global_attn=a.global_attn)
    if a.preset:
        geo = PRESETS[a.preset]
    h, w = a.image_hw
    # Random weights often give one mask token whose logits share a sign everywhere, which
    # would make the thresholded-mask comparison vacuous: take the first derived seed whose
    # every case has 2-98 % foreground (deterministic for a given --seed).
    for attempt in range(50):
        seed = a.seed * 1000 + attempt
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        sam = build_sam(image_size=a.image_size, patch=a.patch, window=a.window, **geo)
        randomise(sam, gen)
        predictor = SamPredictor(sam)
        image = make_image(h, w, rng)
        with torch.no_grad():
            predictor.set_image(image)
            embedding = predictor.get_image_embedding().numpy()
        all_cases = {k: v for k, v in cases(h, w, rng).items() if not a.cases or k in a.cases}
        fractions = []
        for c in all_cases.values():
            with torch.no_grad():
                m, _, _ = predictor.predict(
                    point_coords=None if c["points"] is None else np.array(c["points"], np.float32),
                    point_labels=None if c["labels"] is None else np.array(c["labels"], np.float32),
                    box=None if c["box"] is None else np.array(c["box"], np.float32),
                    mask_input=mask_input(predictor, c),
                    multimask_output=c["multimask"])
            fractions += [float(x.mean()) for x in m]
        if all(0.02 < f < 0.98 for f in fractions):
            break
    print(f"derived seed {seed}")
    config = {"embed_dim": geo["embed_dim"], "depth": geo["depth"], "num_heads": geo["heads"],
              "global_attn_indexes": list(geo["global_attn"]), "image_size": a.image_size,
              "patch_size": a.patch, "window_size": a.window}
    for name, c in all_cases.items():
        pc = None if c["points"] is None else np.array(c["points"], np.float32)
        pl = None if c["labels"] is None else np.array(c["labels"], np.float32)
        bx = None if c["box"] is None else np.array(c["box"], np.float32)
        mi = mask_input(predictor, c)
        with torch.no_grad():
            masks, iou, low_res = predictor.predict(point_coords=pc, point_labels=pl, box=bx,
                                                    mask_input=mi,
                                                    multimask_output=c["multimask"],
                                                    return_logits=False)
        tensors = {
            "image": image,
            "multimask": np.array([1 if c["multimask"] else 0], np.uint8),
            "expected_embedding": embedding.astype(np.float32),
            "expected_low_res_logits": low_res[None].astype(np.float32),
            "expected_iou": iou[None].astype(np.float32),
            "expected_masks": masks.astype(np.uint8),
        }
        if pc is not None:
            tensors["point_coords"], tensors["point_labels"] = pc, pl
        if bx is not None:
            tensors["box"] = bx
        if mi is not None:
            tensors["mask_input"] = mi.astype(np.float32)
        if a.with_input:
            resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None]
            tensors["input_image"] = sam.preprocess(resized).numpy().astype(np.float32)
        d = os.path.join(a.out, f"{a.prefix}{name}")
        os.makedirs(d, exist_ok=True)
        torch.save(sam.state_dict(), os.path.join(d, "sam.pth"))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f)
        save_file(tensors, os.path.join(d, "case.safetensors"))
        frac = masks.mean()
        print(f"{d}: masks {masks.shape} foreground {frac:.3f} iou {np.round(iou, 3)}")


if __name__ == "__main__":
    main()
