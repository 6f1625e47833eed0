"""`mfm translate INPUT OUTPUT`: translate one study or a folder of studies, resumable and shardable.

INPUT is a study (DICOM folder or file, .nii/.nii.gz/.nrrd/.mha) or a folder of studies: a folder
with no DICOM file directly inside it, whose image files and sub-folders are each one study.
A single study goes to OUTPUT (a DICOM folder, or an image file when OUTPUT ends in an image
suffix or --format nifti is given); a folder of studies goes to OUTPUT/<study name>[.nii.gz].
Studies whose output already exists are skipped (outputs are written atomically, so an existing
one is complete). Under torchrun (or with --shard K/N) each rank takes every N-th study.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mfm_engine.cli.preflight import (
    check_free_space,
    check_not_input,
    check_solver_request,
    check_writable,
    estimate_output_bytes,
)
from mfm_engine.errors import MFMError
from mfm_engine.io.image_read import image_suffix
from mfm_engine.solver_names import SOLVER_NAMES

DEFAULT_MODEL_HELP = "the shipped demo model (assets/demo_model)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `translate` subcommand."""
    p = subparsers.add_parser(
        "translate",
        help="translate contrast CT to synthetic native (or back) for one study or a folder of studies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input", metavar="INPUT", help="study (DICOM folder/file, NIfTI, NRRD, MHA) or folder of studies"
    )
    p.add_argument(
        "output", metavar="OUTPUT", help="output DICOM folder or image file (or folder, for many studies)"
    )
    p.add_argument(
        "--direction", choices=["c2n", "n2c"], default="c2n", help="c2n: contrast → native (default)"
    )
    p.add_argument("--solver", default="euler", help="ODE solver: " + ", ".join(SOLVER_NAMES))
    p.add_argument("--steps", type=int, default=1, help="solver steps (default 1)")
    p.add_argument(
        "--model", default=None, help=f"checkpoint (.safetensors or .json); default: {DEFAULT_MODEL_HELP}"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, …")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 on GPUs; on a CPU the measured, cached choice (docs/engine.md)",
    )
    p.add_argument(
        "--no-passthrough",
        action="store_true",
        help="let the model rewrite voxels outside its HU range (padding, air, dense bone); research only",
    )
    p.add_argument(
        "--no-resample",
        action="store_true",
        help="feed slices to the model at their own pixel spacing, not the spacing it was trained at",
    )
    p.add_argument(
        "--no-wrong-way-cap",
        action="store_true",
        help="allow c2n to raise (n2c to lower) a voxel by more than 20 HU",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="slices per batch (default: from free memory)"
    )
    p.add_argument("--format", choices=["auto", "dicom", "nifti"], default="auto", help="output format")
    p.add_argument("--series", default=None, help="series UID or index when a DICOM folder holds several")
    p.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="take every N-th study starting at K (default from torchrun)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo studies whose output already exists")
    p.set_defaults(func=run)


def _has_dicom_directly(folder: Path) -> bool:
    from mfm_engine.io.dicom_read import DicomHeader, read_header

    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and image_suffix(f) is None:
            if isinstance(read_header(f), DicomHeader):
                return True
    return False


def list_studies(input_path: Path) -> tuple[list[Path], bool]:
    """(studies, batch): one study, or every study inside a folder of studies."""
    if not input_path.exists():
        raise MFMError(f"{input_path}: no such file or folder")
    if input_path.is_file() or _has_dicom_directly(input_path):
        return [input_path], False
    studies = sorted(
        p for p in input_path.iterdir() if not p.name.startswith(".") and (p.is_dir() or image_suffix(p))
    )
    if not studies:
        raise MFMError(f"{input_path}: no DICOM files, image files or study folders inside")
    return studies, True


def study_name(path: Path) -> str:
    """A study's name for its output: the file name without its image suffix, or the folder name."""
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def output_for(study: Path, output: Path, batch: bool, fmt: str) -> tuple[Path, str]:
    """Where a study's result goes and in which format ('dicom' or 'nifti')."""
    if not batch:
        if fmt == "auto":
            fmt = "nifti" if image_suffix(output) else "dicom"
        if fmt == "nifti" and not image_suffix(output):
            output = output.with_name(output.name + ".nii.gz")
        return output, fmt
    fmt = "dicom" if fmt == "auto" and study.is_dir() else ("nifti" if fmt == "auto" else fmt)
    name = study_name(study)
    return (output / name if fmt == "dicom" else output / f"{name}.nii.gz"), fmt


def parse_shard(text: str | None) -> tuple[int, int]:
    """(rank, world) from --shard K/N, else torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if text:
        try:
            rank, world = (int(v) for v in text.split("/"))
        except ValueError:
            raise MFMError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise MFMError(f"shard {rank}/{world} is not valid: need 0 <= K < N")
    return rank, world


def _device_for_rank(device: str) -> str:
    # Under torchrun each local rank drives its own GPU.
    if device == "auto" and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def load_translator(model: str | None, device: str, precision: str = "auto", **options):
    """The Translator for --model (or the demo model), with a clear error when there is none."""
    from mfm_engine.demo import demo_checkpoint
    from mfm_engine.translate import Translator

    path = model or demo_checkpoint()
    if path is None:
        raise MFMError("no --model given and the demo model is not installed (assets/demo_model)")
    return Translator.from_checkpoint(path, device=device, precision=precision, **options)


def warn(text: str) -> None:
    """One warning line on stderr, apart from the progress output."""
    print(f"mfm translate: warning: {text}", file=sys.stderr)


def plan_outputs(
    input_path: Path, output: Path, studies: list[Path], batch: bool, fmt: str, overwrite: bool
) -> list[tuple[Path, Path, str, bool]]:
    """(study, target, format, to do) for each study, after every check that needs no pixels.

    Refuses outputs that would touch an input, an output folder that cannot be written, and a disk
    without room for the studies still to do: all before a model is loaded.
    """
    check_not_input(input_path, output)
    plan = []
    for study in studies:
        target, kind = output_for(study, output, batch, fmt)
        check_not_input(study, target)
        plan.append((study, target, kind, overwrite or not target.exists()))
    todo = [(study, kind) for study, _, kind, do in plan if do]
    if todo:
        folder = check_writable(output if batch else plan[0][1])
        needed = sum(estimate_output_bytes(study, kind) for study, kind in todo)
        check_free_space(folder, needed, f"{output} ({len(todo)} studies)" if batch else str(output))
    return plan


def run(args: argparse.Namespace) -> int:
    """Translate every study of this shard that has no output yet."""
    from tqdm import tqdm

    from mfm_engine.io.study import read_study
    from mfm_engine.io.write import write_study

    check_solver_request(args.solver, args.steps, args.batch_size)
    studies, batch = list_studies(Path(args.input))
    rank, world = parse_shard(args.shard)
    mine = studies[rank::world]
    plan = plan_outputs(Path(args.input), Path(args.output), mine, batch, args.format, args.overwrite)
    options = {"passthrough": not args.no_passthrough, "resample": not args.no_resample}
    if args.no_wrong_way_cap:
        options["max_wrong_way_hu"] = None
    translator = load_translator(args.model, _device_for_rank(args.device), args.precision, **options)
    choice = translator.precision_choice
    print(
        f"mfm translate: {len(mine)} of {len(studies)} studies (shard {rank}/{world}), "
        f"{translator.model_name}, {args.direction}, {args.solver}×{args.steps}, "
        f"device {translator.device} ({choice.summary() if choice else translator.precision}), "
        f"pass-through {'on' if translator.passthrough else 'off'}, "
        f"resampling {'on' if translator.resample and translator.training_spacing_mm else 'off'}"
    )
    failures = 0
    for study, target, fmt, todo in tqdm(plan, desc="studies", unit="study", disable=len(plan) < 2):
        if not todo:
            print(f"skip {study}: {target} already exists")
            continue
        try:
            volume = read_study(study, series=args.series)
            for warning in volume.warnings:
                warn(f"{study_name(study)}: {warning}")
            with tqdm(total=volume.shape[0], desc=study_name(study), unit="slice", leave=False) as bar:
                synthetic = translator.translate_volume(
                    volume,
                    direction=args.direction,
                    solver=args.solver,
                    steps=args.steps,
                    batch_size=args.batch_size,
                    progress=lambda done, _total: bar.update(done - bar.n),
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            notes: list[str] = []
            write_study(synthetic, target, format=fmt, source=volume, overwrite=args.overwrite, notes=notes)
            for note in notes:
                warn(note)
        except MFMError as exc:
            if not batch:
                raise
            failures += 1
            print(f"FAILED {study}: {exc}")
            continue
        prov = synthetic.meta["provenance"]
        print(f"wrote {target} ({volume.shape[0]} slices, NFE {prov['nfe']}, {prov['seconds']:.1f} s)")
    if failures:
        raise MFMError(f"{failures} of {len(mine)} studies failed (see the lines above)")
    return 0
