"""The one step of sharing that needs the network: create a Hub repository and upload a finished local folder.

Everything else (the folder, its card) is built locally first, so an upload that fails (no network, no login, no
write access) leaves nothing half-written here, and says so in one line (:class:`~hf_metaid.errors.HubError`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HubError, InvalidArgumentError

REPO_TYPES = ("model", "dataset")


def looks_like_hub_repository(text: str, bare_names: bool = False) -> bool:
    """Whether a name that does not exist locally should be asked of the Hub: ``namespace/name`` with valid Hub
    characters where ``namespace`` is not a local folder, or (``bare_names``, for base checkpoints such as
    ``t5-small``) a valid name without a namespace. Anything else is a mistyped local path."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    namespace, _, repository = text.partition("/")
    if not repository:
        if not bare_names:
            return False
    elif "/" in repository or os.path.lexists(namespace):
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def check_repo_id(repo_id: object, what: str = "repo_id") -> str:
    """``repo_id`` if it is a valid Hub repository name ``namespace/name`` (or ``name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        raise InvalidArgumentError(f"{what} must be a Hub repository name such as org/name, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InvalidArgumentError(f"{what} {repo_id!r} is not a valid Hub repository name ({err})") from None
    return repo_id


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` if needed (``private`` only applies then) and upload every file of ``folder`` in one commit,
    with ``huggingface_hub.HfApi``. Returns the commit's URL.

    Raises:
        HubError: the Hub could not be reached or refused (no network, no token, no write access), in one line.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    if repo_type not in REPO_TYPES:
        raise InvalidArgumentError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=Path(folder), repo_type=repo_type, commit_message=commit_message
        )
    except Exception as err:  # huggingface_hub's own errors and its HTTP client's (connection, timeout) alike
        reason = " ".join(str(err).split()) or type(err).__name__
        raise HubError(f"could not push to the Hub {repo_type} repository {repo_id}: {reason[:300]}") from None
    return str(getattr(commit, "commit_url", None) or f"{repo_type} {repo_id}")
