"""Pairs (manifest, folders, splits), the paired augmentation, and the resumable batch order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.augment import PAPER_TRANSLATE_FRACTION, apply_pair_augmentation, pair_augmentation
from training.data import StreamBatchSampler, derive_seed
from training.errors import ManifestError
from training.pairs import assign_splits, find_pairs, parse_fractions, read_manifest, split_counts

pytestmark = pytest.mark.usefixtures("single_torch_thread")


# -- pairs ---------------------------------------------------------------------------------------


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_manifest_relative_paths_and_splits(tmp_path):
    _touch(tmp_path / "a" / "contrast.nii.gz")
    _touch(tmp_path / "a" / "native.nii.gz")
    (tmp_path / "b" / "contrast").mkdir(parents=True)
    (tmp_path / "b" / "native").mkdir(parents=True)
    m = tmp_path / "manifest.csv"
    m.write_text(
        "patient,contrast,native,split\n"
        "A,a/contrast.nii.gz,a/native.nii.gz,Hold-out\n"
        f"B,{tmp_path / 'b' / 'contrast'},b/native,\n"
    )
    pairs = read_manifest(m)
    assert [p.patient for p in pairs] == ["A", "B"]
    assert pairs[0].split == "holdout" and pairs[1].split is None
    assert pairs[0].contrast == tmp_path / "a" / "contrast.nii.gz"
    assert pairs[1].labels is None


def test_manifest_names_every_missing_file(tmp_path):
    _touch(tmp_path / "a_c.nii.gz")
    m = tmp_path / "m.csv"
    m.write_text("patient,contrast,native\nA,a_c.nii.gz,a_n.nii.gz\nB,b_c.nii.gz,b_n.nii.gz\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(m)
    text = str(err.value)
    assert "m.csv" in text and "3 listed file(s) do not exist" in text
    for name in ("a_n.nii.gz", "b_c.nii.gz", "b_n.nii.gz"):
        assert name in text
    assert "line 2 (A) native" in text


@pytest.mark.parametrize(
    "body, pattern",
    [
        ("patient,contrast\nA,x\n", "header must name"),
        ("patient,contrast,native\n", "lists no pairs"),
        ("patient,contrast,native,split\nA,c,n,validation\n", "unknown split"),
        ("patient,contrast,native\nA,c,n\nA,c,n\n", "listed twice"),
    ],
)
def test_bad_manifests(tmp_path, body, pattern):
    _touch(tmp_path / "c")
    _touch(tmp_path / "n")
    m = tmp_path / "m.csv"
    m.write_text(body)
    with pytest.raises(ManifestError, match=pattern):
        read_manifest(m)


def test_folder_convention(tmp_path):
    _touch(tmp_path / "P1" / "contrast.nii.gz")
    _touch(tmp_path / "P1" / "native.nii.gz")
    _touch(tmp_path / "P1" / "labels.nii.gz")
    (tmp_path / "P2" / "contrast").mkdir(parents=True)
    (tmp_path / "P2" / "native").mkdir(parents=True)
    _touch(tmp_path / "P3" / "contrast.mha")
    pairs, skipped = find_pairs(tmp_path)
    assert [p.patient for p in pairs] == ["P1", "P2"]
    assert pairs[0].labels == tmp_path / "P1" / "labels.nii.gz"
    assert pairs[1].contrast.is_dir()
    assert len(skipped) == 1 and "P3" in skipped[0] and "no native" in skipped[0]
    with pytest.raises(ManifestError, match="no patient folder"):
        find_pairs(tmp_path / "P3")


def test_splits_are_by_patient_and_seeded(tmp_path):
    from training.pairs import PairSpec

    pairs = [PairSpec(f"P{i:02d}", tmp_path, tmp_path) for i in range(20)]
    pairs[0] = PairSpec("P00", tmp_path, tmp_path, "holdout")
    a = assign_splits(pairs, (0.8, 0.1, 0.1), seed=1)
    b = assign_splits(pairs, (0.8, 0.1, 0.1), seed=1)
    assert [p.split for p in a] == [p.split for p in b]
    assert a[0].split == "holdout"  # a given split is kept
    counts = {s: sum(p.split == s for p in a[1:]) for s in ("train", "test", "holdout")}
    assert counts == dict(zip(("train", "test", "holdout"), split_counts(19, (0.8, 0.1, 0.1)), strict=True))
    assert assign_splits(pairs, seed=2) != a
    assert split_counts(3, (0.8, 0.1, 0.1)) == (1, 1, 1)
    assert parse_fractions("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(ManifestError):
        parse_fractions("0.5,0.5")


# -- augmentation ---------------------------------------------------------------------------------


def _pair(size=64, seed=0):
    rng = np.random.default_rng(seed)
    native = rng.uniform(-0.5, 0.4, size=(1, size, size)).astype(np.float32)
    native[:, : size // 4] = 0.1  # structure, so that orientation matters
    return {"native": native, "contrast": native + np.float32(0.3)}


def test_both_images_get_the_same_transform():
    size = 64
    t = pair_augmentation(size, crop=48)
    sample = _pair(size)
    moved = 0
    for seed in range(40):
        out = apply_pair_augmentation(t, sample, seed)
        n, c = out["native"].numpy(), out["contrast"].numpy()
        assert n.shape == c.shape == (1, 48, 48)
        diff = c - n
        # Bilinear resampling is linear: inside the slice the offset stays 0.3; pixels blended with
        # the air padding (-1 in both images) keep a fraction of it, never more, never negative.
        assert diff.min() >= -1e-5 and diff.max() <= 0.3 + 1e-5
        assert np.mean(np.isclose(diff, 0.3, atol=1e-5)) > 0.5
        ref = sample["native"][:, 8:56, 8:56]
        moved += not np.array_equal(n, ref)
    assert moved > 20


def test_identical_inputs_stay_identical_and_labels_stay_labels():
    size = 64
    t = pair_augmentation(size, label_keys=("labels",))
    base = _pair(size)["native"]
    labels = (np.arange(size * size).reshape(1, size, size) % 5).astype(np.float32)
    for seed in range(20):
        out = apply_pair_augmentation(t, {"native": base, "contrast": base.copy(), "labels": labels}, seed)
        assert torch.equal(out["native"], out["contrast"])
        assert set(np.unique(out["labels"].numpy())) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_augmentation_is_reproducible_per_seed():
    t = pair_augmentation(64)
    s = _pair(64)
    a = apply_pair_augmentation(t, s, 5)
    b = apply_pair_augmentation(t, s, 5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    differs = [not torch.equal(apply_pair_augmentation(t, s, k)["native"], a["native"]) for k in range(6, 16)]
    assert any(differs)


def test_padding_is_air_and_input_untouched():
    size = 64
    t = pair_augmentation(size)
    flat = {
        "native": np.full((1, size, size), 0.25, np.float32),
        "contrast": np.full((1, size, size), 0.5, np.float32),
    }
    before = {k: v.copy() for k, v in flat.items()}
    seen_air = False
    for seed in range(30):
        out = apply_pair_augmentation(t, flat, seed)
        vals = np.unique(np.round(out["native"].numpy(), 4))
        assert vals.min() >= -1.0 - 1e-5 and vals.max() <= 0.25 + 1e-5
        seen_air |= bool((out["native"].numpy() == -1.0).any() and (out["contrast"].numpy() == -1.0).any())
    assert seen_air
    assert all(np.array_equal(flat[k], before[k]) for k in flat)


def test_affine_ranges_are_the_papers():
    from monai.transforms import RandAffined

    t = pair_augmentation(512)
    affine = next(x for x in t.transforms if isinstance(x, RandAffined))
    assert affine.prob == pytest.approx(0.7)
    rp = affine.rand_affine.rand_affine_grid
    # MONAI draws each parameter uniformly from (-x, x) for a single number x.
    assert tuple(rp.rotate_range) == pytest.approx((math.pi / 4,))
    assert tuple(rp.translate_range) == pytest.approx((102.4, 102.4))
    assert PAPER_TRANSLATE_FRACTION * 256 == pytest.approx(51.2)
    assert tuple(rp.shear_range) == pytest.approx((math.tan(math.radians(10)),) * 2)


# -- batch order -----------------------------------------------------------------------------------


def _batches(**kw):
    return list(StreamBatchSampler(23, 4, seed=7, **kw))


def test_batches_resume_exactly():
    full = _batches(start_step=0, total_steps=20)
    tail = _batches(start_step=13, total_steps=20)
    assert len(full) == 20 and full[13:] == tail
    # Every pass over the data visits each (kept) item once.
    per_pass = [i for b in full[:5] for i, _ in b]
    assert len(set(per_pass)) == 20


def test_ranks_share_the_work():
    r0 = [i for b in _batches(start_step=0, total_steps=2, rank=0, world_size=2) for i, _ in b]
    r1 = [i for b in _batches(start_step=0, total_steps=2, rank=1, world_size=2) for i, _ in b]
    assert not set(r0) & set(r1)
    seeds0 = [s for b in _batches(start_step=0, total_steps=2, rank=0, world_size=2) for _, s in b]
    seeds1 = [s for b in _batches(start_step=0, total_steps=2, rank=1, world_size=2) for _, s in b]
    assert seeds0 != seeds1


def test_derive_seed_mixes():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(0, 3, s, 0) for s in range(100)}) == 100
