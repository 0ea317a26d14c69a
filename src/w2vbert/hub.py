"""Find a file of a model: in a local directory, or in a Hugging Face hub repo through `huggingface_hub`.

Everything that reads a checkpoint (config, weights, feature extractor, tokenizer) resolves its files here, so
the rules are the same for all of them: a path that exists is a local directory; anything else is a repo id,
fetched through the hub cache (which honours `HF_HUB_OFFLINE=1`, `HF_HOME` and `cache_dir`).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

OFFLINE_HINT = (
    "no network or HF_HUB_OFFLINE=1, and the file is not in the local hub cache. Pass a local directory "
    "that holds the checkpoint, download it once with `huggingface-cli download REPO` where there is a network, "
    "or point HF_HOME / cache_dir at a cache that has it"
)


def resolve_file(
    path_or_repo_id: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    subfolder: str = "",
) -> Path:
    """Return the local path of `filename` in a model directory or hub repo; `FileNotFoundError` if absent."""
    path = _resolve(path_or_repo_id, filename, revision, cache_dir, local_files_only, token, subfolder, True)
    if path is None:
        raise FileNotFoundError(f"{path_or_repo_id} has no {filename}")
    return path


def resolve_optional_file(
    path_or_repo_id: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    subfolder: str = "",
) -> Path | None:
    """Like `resolve_file`, but `None` when the file is absent (or, offline, absent from the hub cache)."""
    return _resolve(path_or_repo_id, filename, revision, cache_dir, local_files_only, token, subfolder, False)


def _resolve(
    path_or_repo_id: str | os.PathLike,
    filename: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    token: str | bool | None,
    subfolder: str,
    required: bool,
) -> Path | None:
    local = Path(path_or_repo_id)
    if local.is_dir():
        candidate = local / subfolder / filename
        return candidate if candidate.is_file() else None
    if local.exists():
        raise NotADirectoryError(f"{path_or_repo_id} is a file; expected a model directory or a hub repo id")
    repo_id = str(path_or_repo_id)
    try:
        return Path(
            hf_hub_download(
                repo_id, filename, subfolder=subfolder or None, revision=revision, cache_dir=cache_dir,
                local_files_only=local_files_only, token=token,
            )
        )
    except LocalEntryNotFoundError as error:
        # Offline (or local_files_only) and not in the cache: the hub may still have it. An optional file
        # is then taken as absent; the caller reports a missing required one with the hint below.
        if not required:
            return None
        raise OSError(f"cannot get {filename} of {repo_id!r}: {OFFLINE_HINT}") from error
    except RemoteEntryNotFoundError:
        return None
    except (RepositoryNotFoundError, GatedRepoError) as error:
        raise OSError(
            f"{repo_id!r} is neither a local directory nor a hub repo this token can read "
            f"({type(error).__name__}); check the spelling, or log in with `huggingface-cli login` for gated repos"
        ) from error
    except RevisionNotFoundError as error:
        raise OSError(f"{repo_id!r} has no revision {revision!r}") from error
    except HFValidationError as error:
        raise OSError(
            f"{path_or_repo_id!r} is not an existing directory and not a valid hub repo id ('owner/name')"
        ) from error


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file that must hold an object (config.json and friends), with errors that name the file."""
    import json

    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}")
    return values
