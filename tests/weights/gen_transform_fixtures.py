"""Reference fixtures for crate/src/model/transforms.rs.

Expected values come from Pillow (Image.resize BILINEAR, as torchvision's
resize on a PIL image does), torch.nn.functional.interpolate, and
segment_anything (ResizeLongestSide, Sam.postprocess_masks).

Inputs are produced by a counter-based integer hash (`hash_u32`) that the Rust
tests reimplement, so large images need not be stored: for those only a
weighted checksum of Pillow's output and a strided sample of it are kept.

Run: /work/venv/bin/python tests/weights/gen_transform_fixtures.py
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import save_file
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

OUT = Path(__file__).resolve().parents[2] / "crate" / "tests" / "data" / "transforms"
M32 = np.uint64(0xFFFFFFFF)
FULL_LIMIT = 6000  # outputs up to this many bytes are stored whole
SAMPLES = 3000  # otherwise about this many strided samples


def hash_u32(n: int, seed: int) -> np.ndarray:
    """x = (i + seed * 0x01000193) * 0x9E3779B1; x ^= x >> 15; x *= 0x85EBCA77; x ^= x >> 13 (mod 2^32)."""
    i = np.arange(n, dtype=np.uint64)
    x = ((i + np.uint64(seed) * np.uint64(0x01000193)) * np.uint64(0x9E3779B1)) & M32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x85EBCA77)) & M32
    x ^= x >> np.uint64(13)
    return x


def rand_u8(n: int, seed: int) -> np.ndarray:
    return (hash_u32(n, seed) >> np.uint64(24)).astype(np.uint8)


def rand_f32(n: int, seed: int) -> np.ndarray:
    # Exact in f32 on both sides: integer in [0, 65535] minus 32768, divided by 1024.
    v = (hash_u32(n, seed) >> np.uint64(16)).astype(np.float32)
    return ((v - np.float32(32768.0)) / np.float32(1024.0)).astype(np.float32)


def checksum(b: np.ndarray) -> int:
    """sum_i b[i] * (mix(i) | 1) mod 2^64; any single-byte change alters it."""
    i = np.arange(b.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        m = i * np.uint64(0x9E3779B97F4A7C15)
        m ^= m >> np.uint64(29)
        m |= np.uint64(1)
        return int(np.sum(b.reshape(-1).astype(np.uint64) * m, dtype=np.uint64))


def split_u64(v: int) -> list[int]:
    return [v & 0xFFFFFFFF, v >> 32]


def pil_resize(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    pil = Image.fromarray(img if img.shape[2] == 3 else img[:, :, 0])
    out = np.asarray(pil.resize((ow, oh), Image.BILINEAR))
    return out.reshape(oh, ow, -1)


def store_u8(tensors: dict, name: str, params: list[int], out: np.ndarray) -> None:
    flat = out.reshape(-1)
    stride = 1 if flat.size <= FULL_LIMIT else -(-flat.size // SAMPLES)
    tensors[f"{name}.params"] = np.array(params + [stride] + split_u64(checksum(flat)), dtype=np.int64)
    tensors[f"{name}.expected"] = np.ascontiguousarray(flat[::stride])


def pil_cases() -> dict:
    # (h, w, channels, out_h, out_w)
    cases = [
        (1, 1, 3, 1, 1),
        (1, 1, 3, 5, 7),
        (3, 700, 3, 1, 256),
        (700, 3, 3, 256, 1),
        (3, 700, 3, 24, 5600),
        (480, 640, 3, 768, 1024),
        (1000, 333, 3, 1024, 341),
        (300, 200, 3, 256, 171),
        (37, 53, 3, 91, 17),
        (64, 64, 3, 64, 64),
        (64, 64, 3, 64, 100),
        (64, 64, 3, 100, 64),
        (64, 64, 3, 64, 29),
        (64, 64, 3, 29, 64),
        (2000, 1500, 3, 1024, 768),
        (17, 23, 1, 40, 9),
        (5, 5, 3, 1024, 1024),
        (129, 97, 3, 128, 96),
        (13, 2, 3, 1, 1),
        # Pillow 13 resizes vertically first when h - out_h > 2 * (w - out_w).
        (100, 100, 3, 10, 55),
        (100, 100, 3, 10, 60),
        (100, 100, 3, 50, 150),
        (300, 100, 3, 150, 90),
        (2000, 600, 3, 1024, 307),
    ]
    t = {}
    for k, (h, w, c, oh, ow) in enumerate(cases):
        seed = 100 + k
        img = rand_u8(h * w * c, seed).reshape(h, w, c)
        out = pil_resize(img, oh, ow)
        store_u8(t, f"pil{k:02}", [h, w, c, oh, ow, seed], out)
    return t


def resize_longest_side_cases() -> dict:
    t = {}
    shapes = [(1, 1), (3, 700), (700, 3), (480, 640), (1000, 333), (300, 200), (1024, 1024),
              (1023, 1), (333, 1000), (7, 5), (181, 217), (256, 256), (999, 1001)]
    rows = []
    for target in (1024, 256, 64):
        rls = ResizeLongestSide(target)
        for h, w in shapes:
            nh, nw = rls.get_preprocess_shape(h, w, target)
            rows.append([target, h, w, nh, nw])
    t["rls.shapes"] = np.array(rows, dtype=np.int64)

    rng = np.random.default_rng(7)
    coord_rows, box_rows = [], []
    for h, w in shapes:
        rls = ResizeLongestSide(1024)
        pts = rng.uniform(-5, max(h, w) + 5, size=(4, 2)).astype(np.float32)
        mapped = rls.apply_coords(pts, (h, w)).astype(np.float32)
        for p, q in zip(pts, mapped):
            coord_rows.append([h, w, p[0], p[1], q[0], q[1]])
        box = np.sort(rng.uniform(0, max(h, w), size=4).astype(np.float32))
        box = box[[0, 1, 2, 3]].reshape(1, 4)
        mb = rls.apply_boxes(box, (h, w)).astype(np.float32)
        box_rows.append([h, w, *box[0], *mb[0]])
    t["rls.coords"] = np.array(coord_rows, dtype=np.float32)
    t["rls.boxes"] = np.array(box_rows, dtype=np.float32)

    # apply_image through segment_anything (torchvision resize on a PIL image).
    for k, (h, w, target) in enumerate([(50, 30, 64), (300, 200, 256), (1000, 333, 1024), (3, 700, 1024)]):
        seed = 500 + k
        img = rand_u8(h * w * 3, seed).reshape(h, w, 3)
        out = ResizeLongestSide(target).apply_image(img)
        store_u8(t, f"apply{k}", [h, w, 3, out.shape[0], out.shape[1], seed, target], out)
    return t


def interp(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    y = F.interpolate(torch.from_numpy(x)[None, None], (oh, ow), mode="bilinear", align_corners=False)
    return y[0, 0].numpy()


def torch_cases() -> dict:
    t = {}
    cases = [(1, 1, 3, 3), (5, 3, 17, 4), (9, 13, 5, 7), (16, 16, 64, 64), (20, 30, 7, 11),
             (3, 3, 3, 3), (7, 1, 2, 9), (64, 48, 23, 100), (2, 2, 1024, 3)]
    for k, (h, w, oh, ow) in enumerate(cases):
        seed = 300 + k
        x = rand_f32(h * w, seed).reshape(h, w)
        y = interp(x, oh, ow)
        t[f"interp{k}.params"] = np.array([h, w, oh, ow, seed, 1], dtype=np.int64)
        t[f"interp{k}.expected"] = np.ascontiguousarray(y.reshape(-1))

    # Sam.postprocess_masks only reads image_encoder.img_size.
    class Enc:
        pass

    pcases = [  # (lh, lw, img_size, input_hw, original_hw)
        (16, 16, 64, (64, 40), (100, 62)),
        (16, 16, 64, (37, 64), (20, 35)),
        (256, 256, 1024, (1024, 683), (300, 200)),
        (256, 256, 1024, (768, 1024), (480, 640)),
    ]
    for k, (lh, lw, img, inp, orig) in enumerate(pcases):
        seed = 400 + k
        x = rand_f32(lh * lw, seed).reshape(1, 1, lh, lw)
        enc = Enc()
        enc.img_size = img
        fake = type("FakeSam", (), {"image_encoder": enc})()
        with torch.no_grad():
            y = Sam.postprocess_masks(fake, torch.from_numpy(x), inp, orig)[0, 0].numpy().reshape(-1)
        stride = 1 if y.size <= 2000 else -(-y.size // 8000)
        t[f"post{k}.params"] = np.array([lh, lw, img, *inp, *orig, seed, stride], dtype=np.int64)
        t[f"post{k}.expected"] = np.ascontiguousarray(y[::stride])
    return t


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(pil_cases(), str(OUT / "pil_resize.safetensors"))
    save_file(resize_longest_side_cases(), str(OUT / "resize_longest_side.safetensors"))
    save_file(torch_cases(), str(OUT / "interpolate.safetensors"))
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)


if __name__ == "__main__":
    main()
