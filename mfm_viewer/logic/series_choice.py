"""Choosing a series without asking (scripted screenshots): the largest CT series, or an error. Qt-free."""

from __future__ import annotations

from mfm_engine.errors import SeriesChoiceError
from mfm_engine.io.study import series_list_text


def _lossy(info) -> bool:
    name = (getattr(info, "transfer_syntax", "") or "").lower()
    return "lossy" in name or "baseline" in name or name.strip() == "jpeg 2000 image compression"


def pick_largest_ct(series: list) -> tuple[int, str]:
    """(index, sentence saying why) of the series to open when nobody can be asked.

    The CT series with the most slices (then the most pixels per slice); a tie between series of
    equal size and different content cannot be settled, and raises SeriesChoiceError with the list.
    """
    if not series:
        raise SeriesChoiceError("no series to choose from", series)
    ct = [i for i, s in enumerate(series) if (getattr(s, "modality", "") or "").upper() == "CT"]
    candidates = ct or list(range(len(series)))

    def size(i: int) -> tuple[int, int]:
        s = series[i]
        return int(getattr(s, "n_slices", 0)), int(getattr(s, "rows", 0)) * int(getattr(s, "cols", 0))

    best = max(candidates, key=size)
    tied = [i for i in candidates if size(i) == size(best)]
    if len(tied) > 1 and size(best)[0] == 1:
        # Single images of the same size (e.g. one image in several transfer syntaxes): any will do,
        # a lossless one first.
        best = next((i for i in tied if not _lossy(series[i])), tied[0])
    elif len(tied) > 1:
        raise SeriesChoiceError(
            f"{len(tied)} CT series have the same size ({size(best)[0]} slices); choose one with "
            f"--series N or --series UID:\n{series_list_text(series)}",
            series,
        )
    kind = "CT series" if ct else "series (none is CT)"
    n = size(best)[0]
    why = (
        f"chose the largest {kind}: [{best}] {series[best].summary()} "
        f"({n} slice(s); {len(series)} series in the folder)"
    )
    return best, why
