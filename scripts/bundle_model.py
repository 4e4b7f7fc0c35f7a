#!/usr/bin/env python3
"""Writes weights/manifest.json for the bundled model from a training run and evaluation logs.

usage: bundle_model.py RUN_DIR MODEL_FILE EVAL_DIR [NOTE]
env: TRAINED_BY (how the weights came about, when not one run from scratch),
     DEMO_QUALITY=false (the page then warns that the model is below the app's bar)

RUN_DIR holds the trainer's config.json; MODEL_FILE is the shipped file (weights/...);
EVAL_DIR holds `brainsam evaluate` outputs named <what>.txt whose last line is mean_dice=...
Standard library only, so it runs before any venv exists.
"""
import hashlib
import json
import os
import sys


def main():
    run, model, evals = sys.argv[1:4]
    note = sys.argv[4] if len(sys.argv) > 4 else None
    cfg = json.load(open(os.path.join(run, "config.json")))
    with open(model, "rb") as f:
        data = f.read()
    results = {}
    for name in sorted(os.listdir(evals)):
        if not name.endswith(".txt"):
            continue
        lines = [l.strip() for l in open(os.path.join(evals, name)) if l.strip()]
        head = lines[0] if lines else ""
        last = lines[-1] if lines else ""
        if last.startswith("mean_dice="):
            per = {}
            in_table = False
            for l in lines:
                if l.startswith("per structure"):
                    in_table = True
                    continue
                if in_table and not l.startswith("mean_dice="):
                    k, v = l.split()
                    per[k] = float(v)
            results[name[:-4]] = {"command": head, "mean_dice": float(last.split("=")[1]),
                                  "per_structure": per}
    log = os.path.join(run, "log.csv")
    rows = [l.split(",") for l in open(log).read().splitlines()[1:]] if os.path.exists(log) else []
    # safetensors: 8-byte little-endian header length, then the JSON header.
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    meta = header.get("__metadata__", {})
    focus = meta.get("brainsam.focus")
    thresholds = meta.get("brainsam.mask_thresholds")
    manifest = {
        "file": os.path.basename(model),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "dtype": "float16",
        "geometry": cfg["geometry"],
        # Where each prompt is predicted (checkpoint metadata `brainsam.focus`): a window of
        # context x the prompt's size, at least min_side px; null: the whole slice.
        "focus": json.loads(focus) if focus else None,
        # Logits each kind of structure's masks are cut at (`brainsam calibrate`), in the
        # order thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens,
        # ventral DC, other: on one slice, and on the slices of a 3-D walk; null: SAM's 0.
        "mask_thresholds": json.loads(thresholds) if thresholds else None,
        "trained_by": os.environ.get(
            "TRAINED_BY", "brainsam train (this repository), from scratch, every weight trainable"),
        "recipe": cfg["config"],
        "data": {
            "train_subjects": cfg["subjects"],
            "source": "../shared/data/label_maps (SynthSeg repository, Apache-2.0), images synthesised per volume",
            "contrasts": cfg["config"]["contrasts"],
        },
        "training": {
            "steps": max((int(r[0]) for r in rows), default=0),
            "final_loss_mean_last_100": (sum(float(r[1]) for r in rows[-100:]) / len(rows[-100:])) if rows else None,
            "slices_per_s": float(rows[-1][3]) if rows else None,
            "note": note,
        },
        "evaluation": results,
    }
    if "DEMO_QUALITY" in os.environ:
        manifest["demo_quality"] = os.environ["DEMO_QUALITY"] == "true"
    out = os.path.join(os.path.dirname(model), "manifest.json")
    with open(out, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {out}: sha256 {manifest['sha256'][:16]}…, {len(results)} evaluations")


if __name__ == "__main__":
    main()
