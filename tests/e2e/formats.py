#!/usr/bin/env python3
"""The synthetic image in the other formats the page opens, written by independent libraries,
and the checks of what the page exports from them.

  formats.py nrrd IMAGE.nii.gz OUT.nrrd        pynrrd, LPS space as 3D Slicer writes it
  formats.py dicom IMAGE.nii.gz OUT_DIR        pydicom, one MR slice per file (uint16 + rescale)
  formats.py same-grid A.nii.gz B.nii.gz       JSON: are A and B the same world grid (any axis order)?

Requires: numpy, nibabel, pynrrd, pydicom.
"""
import json
import os
import sys

import nibabel as nib
import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS


def to_nrrd(src, out):
    import nrrd

    img = nib.load(src)
    a = img.affine
    header = {"space": "left-posterior-superior", "space directions": (LPS @ a[:3, :3]).T,
              "space origin": LPS @ a[:3, 3], "kinds": ["domain"] * 3, "encoding": "gzip"}
    nrrd.write(out, np.asarray(img.dataobj, dtype=np.float32), header, index_order="F")


def to_dicom(src, out):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    img = nib.load(src)
    vol = np.asarray(img.dataobj, dtype=np.float64)
    a = img.affine
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    # Columns run along voxel axis 0, rows along axis 1, one file per index of axis 2.
    col_dir = LPS @ a[:3, 0] / spacing[0]
    row_dir = LPS @ a[:3, 1] / spacing[1]
    lo, hi = float(vol.min()), float(vol.max())
    slope = (hi - lo) / 4095 if hi > lo else 1.0
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    os.makedirs(out, exist_ok=True)
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "Synthetic^Brainsam", "synthetic"
        ds.Manufacturer = "brainsam tests"
        ds.StudyDate, ds.StudyTime, ds.SeriesDescription = "20261202", "120000", "T1 synthetic"
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, k + 1, 1
        ds.ImagePositionPatient = [float(x) for x in LPS @ (a @ [0, 0, k, 1])[:3]]
        ds.ImageOrientationPatient = [float(x) for x in (*col_dir, *row_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows, between columns
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{lo:.10g}"
        pixels = np.round((vol[:, :, k].T - lo) / slope).astype("<u2")  # rows × columns
        ds.PixelData = pixels.tobytes()
        ds.save_as(os.path.join(out, f"IM{k + 1:04d}.dcm"), enforce_file_format=True)


def same_grid(p, q):
    a, b = (nib.as_closest_canonical(nib.load(x)) for x in (p, q))
    return {"shapes": [list(a.shape[:3]), list(b.shape[:3])],
            "affine_diff": float(np.abs(a.affine - b.affine).max())}


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    cmd, x, y = sys.argv[1:]
    if cmd == "nrrd":
        to_nrrd(x, y)
    elif cmd == "dicom":
        to_dicom(x, y)
    elif cmd == "same-grid":
        print(json.dumps(same_grid(x, y)))
    else:
        sys.exit(__doc__)
