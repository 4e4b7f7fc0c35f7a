#!/usr/bin/env python3
"""Share of wrong voxels on fragmented slices, from `brainsam evaluate --save DIR` output.

A slice is fragmented for a structure when the box of all its pixels there is over 1.5x the
box of its largest 4-connected piece (as `train --fragment-prob` counts). Prints that share
and the mean 3-D Dice over structures, as saved and with those slices made perfect.
Usage: fragment_errors.py DIR SUBJECT[,SUBJECT...] [AXIS=2]   (needs numpy, scipy, nibabel)
"""
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage

SPREAD = 1.5


def box_area(m):
    r, c = np.nonzero(m)
    return (r.max() - r.min() + 1) * (c.max() - c.min() + 1)


def dice(p, t):
    s = p.sum() + t.sum()
    return 1.0 if s == 0 else 2.0 * (p & t).sum() / s


def main(folder, subjects, axis):
    wrong = wrong_fragmented = 0
    dices, dices_fixed = [], []
    for s in subjects:
        pred = np.asarray(nib.load(f"{folder}/{s}_pred.nii.gz").dataobj)
        truth = np.asarray(nib.load(f"{folder}/{s}_truth.nii.gz").dataobj)
        for label in np.unique(truth[truth != 0]):
            p = np.moveaxis(pred == label, axis, 0)
            t = np.moveaxis(truth == label, axis, 0)
            fixed = p.copy()
            for k in np.nonzero(t.any((1, 2)))[0]:
                errors = (p[k] ^ t[k]).sum()
                wrong += errors
                pieces, n = ndimage.label(t[k])
                if n > 1:
                    largest = np.argmax(ndimage.sum(t[k], pieces, range(1, n + 1))) + 1
                    if box_area(t[k]) > SPREAD * box_area(pieces == largest):
                        wrong_fragmented += errors
                        fixed[k] = t[k]
            dices.append(dice(p, t))
            dices_fixed.append(dice(fixed, t))
    print(f"wrong voxels on fragmented slices: {wrong_fragmented} of {wrong} "
          f"({wrong_fragmented / max(wrong, 1):.3f})")
    print(f"mean dice {np.mean(dices):.4f}; with fragmented slices perfect {np.mean(dices_fixed):.4f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]) if len(sys.argv) > 3 else 2)
