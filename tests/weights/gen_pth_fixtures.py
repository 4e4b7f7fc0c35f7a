"""Fixtures for crate/src/weights/pth/ (its tests.rs).

Writes small torch.save checkpoints into crate/tests/data/pth/ and, next to
each `<case>.pth`, a `<case>.safetensors` written by the `safetensors`
package holding the same tensors (contiguous copies) as expected values.

Run: /work/venv/bin/python tests/weights/gen_pth_fixtures.py
"""

import io
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

OUT = Path(__file__).resolve().parents[2] / "crate" / "tests" / "data" / "pth"


def expected(tensors: dict, path: Path) -> None:
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path))


def case(name: str, obj, tensors: dict, **save_kwargs) -> None:
    torch.save(obj, OUT / f"{name}.pth", **save_kwargs)
    expected(tensors, OUT / f"{name}.safetensors")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        p.unlink()
    g = torch.Generator().manual_seed(0)

    dtypes = {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "i64": torch.tensor([-(2**40), -1, 0, 7], dtype=torch.int64),
        "i32": torch.tensor([-5, 1 << 30], dtype=torch.int32),
        "i16": torch.tensor([[-300, 2], [3, 32767]], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True, False, False]),
    }
    case("dtypes", dtypes, dtypes)
    # Values of the float tensors converted by torch, to check to_f32.
    expected({k: v.float() for k, v in dtypes.items() if v.dtype != torch.bool}, OUT / "dtypes_f32.safetensors")

    big = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    base = torch.randn(4, 6, generator=g)
    views = {
        "transposed": torch.randn(3, 5, generator=g).t(),
        "sliced": big[2:5, 1:3],
        "row": big[4],
        "strided": big[::2, ::3],
        "shared_base": base,
        "shared_view": base.view(2, 12),
        "shared_col": base[:, 3],
        "expanded": torch.tensor([1.0, 2.0, 3.0]).expand(2, 3),
        "param": nn.Parameter(torch.randn(2, 2, generator=g)),
        "half_t": torch.randn(2, 3, generator=g).half().t(),
    }
    case("views", views, views)

    inner = {"enc.w": torch.randn(2, 3, generator=g), "enc.b": torch.zeros(2, dtype=torch.float16)}
    case("nested_model", {"model": inner, "epoch": 3, "optimizer": {"lr": 0.1, "betas": (0.9, 0.99)}}, inner)
    case("nested_state_dict", {"state_dict": inner, "meta": None, "name": "x" * 300}, inner)

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(4, 3), nn.LayerNorm(3))
    sd = module.state_dict()
    assert hasattr(sd, "_metadata")
    case("module", sd, sd)
    case("module_proto4", sd, sd, pickle_protocol=4)

    scalars = {"s": torch.tensor(3.5), "n": torch.tensor(7, dtype=torch.int64), "h": torch.tensor(-2.0).half()}
    case("scalar", scalars, scalars)

    # Same archive as module.pth with every entry deflate-compressed.
    src = zipfile.ZipFile(OUT / "module.pth")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    (OUT / "module_deflate.pth").write_bytes(buf.getvalue())
    expected(sd, OUT / "module_deflate.safetensors")

    # Pre-1.6 format, which the reader refuses with advice to re-save.
    torch.save({"w": torch.ones(2)}, OUT / "legacy.pth", _use_new_zipfile_serialization=False)

    total = 0
    for p in sorted(OUT.iterdir()):
        total += p.stat().st_size
        print(p.name, p.stat().st_size)
    print("total", total)


if __name__ == "__main__":
    main()
