"""A calibration set as a Hugging Face ``datasets`` folder, with its card as README, and the push to the hub.

The folder is what ``Dataset.save_to_disk`` writes, so ``datasets.load_from_disk``
reads it back and ``push_to_hub`` publishes it.  Its rows are those of
:meth:`CalibrationSet.to_hf_dataset` (``input_ids`` and ``attention_mask`` at
each window's own length, padding dropped: the form llm-compressor's
``oneshot(dataset=...)`` and GPTQModel take without re-tokenizing), plus
``text``, the decoded window, when a tokenizer is given.  The whole folder is
built in a temporary sibling and renamed into place, so a failure leaves
nothing at the destination.

The push uploads the card first and then the data: ``push_to_hub`` keeps an
existing README's text and only adds its ``dataset_info`` to the YAML header,
so the hub page is the card.  Offline (``HF_HUB_OFFLINE``, or the hub not
reachable) the push is skipped with one line saying so; the folder is ready
either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core import failpoints
from calibench.core.connectivity import decide
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_dir
from calibench.core.settings import DEFAULTS
from calibench.core.text import one_line
from calibench.data.calibset import CalibrationSet

README = "README.md"


def hf_dataset(calib: CalibrationSet, tokenizer: Any | None = None) -> Any:
    """The set's rows as a ``datasets.Dataset`` (with ``text`` when a tokenizer is given)."""
    dataset = calib.to_hf_dataset()
    if tokenizer is not None:
        dataset = dataset.add_column("text", calib.texts(tokenizer))
    return dataset


def write_hf(
    calib: CalibrationSet, out: str | Path, tokenizer: Any | None = None, card: str | None = None, force: bool = False
) -> Path:
    """Write the ``save_to_disk`` folder at ``out`` (which must not exist unless ``force``), with ``card`` as its
    README."""
    import datasets

    dataset = hf_dataset(calib, tokenizer)
    quiet = not datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the command prints its own line; no tqdm bar on stderr
    try:
        with atomic_dir(out, force=force) as tmp:
            dataset.save_to_disk(str(tmp))
            failpoints.reach("export.hf_saved")  # data on disk, card not yet, nothing at out
            if card is not None:
                (tmp / README).write_text(card, encoding="utf-8")
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return Path(out)


def check_repo_id(repo: str, fmt: str = "hf") -> None:
    """Refuse a push that cannot work, before any work: another format, or a malformed repo id."""
    if fmt != "hf":
        raise CalibenchError(f"--push-to-hub needs --format hf (a datasets folder), not --format {fmt}")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise CalibenchError(f"--push-to-hub '{repo}' is not a hub repo id: use NAME or ORG/NAME") from None


@dataclass(frozen=True)
class PushResult:
    pushed: bool
    message: str  # one line for the user


def push_to_hub(
    folder: str | Path, repo: str, offline: bool | None = DEFAULTS.offline, private: bool | None = None
) -> PushResult:
    """Publish an exported folder as dataset ``repo``; skipped (not failed) when offline."""

    folder = Path(folder)
    state = decide(offline)
    if state.offline:
        return PushResult(
            False,
            f"push to the hub skipped ({state.reason}): {folder} is ready; rerun the export "
            f"online with --push-to-hub {repo} to publish it",
        )
    import datasets
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo, repo_type="dataset", exist_ok=True, private=private)
        if (folder / README).is_file():
            api.upload_file(
                path_or_fileobj=str(folder / README), path_in_repo=README, repo_id=repo, repo_type="dataset"
            )
        datasets.load_from_disk(str(folder)).push_to_hub(repo, private=private)
    except Exception as exc:  # auth, permissions, network: one line, the folder stays
        first = one_line(str(exc), 300)
        raise CalibenchError(
            f"push to {repo} failed ({type(exc).__name__}: {first}); {folder} is written: "
            "log in with `hf auth login` (or set HF_TOKEN) and push again"
        ) from None
    return PushResult(True, f"pushed {folder} to https://huggingface.co/datasets/{repo}")
