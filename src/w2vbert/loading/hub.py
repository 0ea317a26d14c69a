"""Find a file of a model: in a local directory, or in a Hugging Face hub repo through `huggingface_hub`.

Everything that reads a checkpoint (config, weights, feature extractor, tokenizer) resolves its files here, so
the rules are the same for all of them: a path that exists is a local directory; anything else is a repo id,
fetched through the hub cache (which honours `HF_HUB_OFFLINE=1`, `HF_HOME` and `cache_dir`). The hub keywords
of every `from_pretrained` travel together as one `HubOptions`, built once per call.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "that holds the checkpoint, download it once with `hf download REPO` where there is a network, "
    "or point HF_HOME / cache_dir at a cache that has it"
)


@dataclass(frozen=True)
class HubOptions:
    """Where a model's files come from: the hub keywords `from_pretrained` takes, as transformers names them."""

    revision: str | None = None  # branch, tag or commit of a hub repo (None: the default branch)
    cache_dir: str | os.PathLike | None = None  # hub cache folder (None: HF_HOME's)
    local_files_only: bool = False  # never reach the network, only the cache
    token: str | bool | None = None  # hub token for private or gated repos
    subfolder: str = ""  # the model's folder inside the directory or repo

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def take(cls, keywords: dict[str, Any]) -> HubOptions:
        """The hub options among `keywords`, removed from it (the rest are the caller's own)."""
        return cls(**{name: keywords.pop(name) for name in cls.keys() if name in keywords})


DEFAULT_HUB = HubOptions()  # the defaults of every keyword: the newest files, through HF_HOME's cache


def resolve_file(path_or_repo_id: str | os.PathLike, filename: str, hub: HubOptions = DEFAULT_HUB) -> Path:
    """Return the local path of `filename` in a model directory or hub repo; `FileNotFoundError` if absent."""
    path = _resolve(path_or_repo_id, filename, hub, required=True)
    if path is None:
        raise FileNotFoundError(f"{path_or_repo_id} has no {filename}")
    return path


def resolve_optional_file(
    path_or_repo_id: str | os.PathLike, filename: str, hub: HubOptions = DEFAULT_HUB
) -> Path | None:
    """Like `resolve_file`, but `None` when the file is absent (or, offline, absent from the hub cache)."""
    return _resolve(path_or_repo_id, filename, hub, required=False)


def _resolve(path_or_repo_id: str | os.PathLike, filename: str, hub: HubOptions, required: bool) -> Path | None:
    local = Path(path_or_repo_id)
    if local.is_dir():
        candidate = local / hub.subfolder / filename
        return candidate if candidate.is_file() else None
    if local.exists():
        raise NotADirectoryError(f"{path_or_repo_id} is a file; expected a model directory or a hub repo id")
    repo_id = str(path_or_repo_id)
    try:
        return Path(
            hf_hub_download(
                repo_id, filename, subfolder=hub.subfolder or None, revision=hub.revision, cache_dir=hub.cache_dir,
                local_files_only=hub.local_files_only, token=hub.token,
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
            f"({type(error).__name__}); check the spelling, or log in with `hf auth login` for gated repos"
        ) from error
    except RevisionNotFoundError as error:
        raise OSError(f"{repo_id!r} has no revision {hub.revision!r}") from error
    except HFValidationError as error:
        raise OSError(
            f"{path_or_repo_id!r} is not an existing directory and not a valid hub repo id ('owner/name')"
        ) from error
