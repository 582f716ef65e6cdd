"""Exceptions users can catch by name.

Every error hf_metaid raises on purpose is a :class:`MetaIDError`, and also the built-in exception a caller would
expect for its kind (``ValueError``, ``KeyError``, ``OSError`` ...), so code written against either keeps working.
The ``hf-metaid`` command prints these as one line; anything else is a bug and keeps its traceback.

Kept dependency-free and flat beside the model files, because a saved model folder carries its code files (and the
files they import) to the Hub for ``trust_remote_code`` loading.
"""


class MetaIDError(Exception):
    """Base class of every error hf_metaid raises on purpose."""


class InvalidArgumentError(MetaIDError, TypeError, ValueError):
    """An argument of a public function has the wrong type or a value out of range; the message names it.

    Both a ``TypeError`` and a ``ValueError``, so callers that catch either for bad arguments still catch it.
    """


class InteractionFormatError(MetaIDError, ValueError):
    """An interaction file or dataset breaks a rule; the message names the file, line and rule."""


class UnknownEntityError(MetaIDError, KeyError):
    """A raw user or item id that the entity vocabulary does not contain."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class VocabularyMismatchError(MetaIDError, ValueError):
    """A tokenizer and a model built for different ID vocabularies were paired."""


class BaseModelMismatchError(MetaIDError, ValueError):
    """A LoRA adapter met a base model other than the one it was trained on; the message shows both fingerprints."""


class UnknownDataError(MetaIDError, ValueError):
    """Data whose items the model's ID vocabulary mostly does not know (another data set): evaluated, its hit rate
    would read as a bad model rather than as the wrong data; used to grow the vocabulary, its new items would find
    no known neighbours and fill the cold-start cluster."""


class SavedFileError(MetaIDError, OSError, ValueError):
    """A model folder or vocabulary file is missing, incomplete or damaged; the message names the path and what is
    wrong with it. An ``OSError`` (what a missing file raises) and a ``ValueError`` (what a damaged one raised)."""


class OutputExistsError(MetaIDError, FileExistsError):
    """An output folder already holds files and replacing it was not asked for (``overwrite=True``,
    ``--overwrite``)."""


class UnwritableOutputError(MetaIDError, OSError):
    """Nothing can be written where an output goes (a parent folder that cannot be made, no permission, a read-only
    or full file system); found before the work that would fill it. The message names the path and the reason."""


class LeftoverWarning(UserWarning):
    """Files and folders a killed run left beside an output: how many were removed and the space that freed, or one
    left alone and why (a running writer's, another host's); ``hf-metaid`` prints it as one line."""


class HubError(MetaIDError, ConnectionError):
    """The Hugging Face Hub could not be reached or refused a request (no network, no login, no write access);
    the message names the repository and the Hub's reason."""


class DataWarning(UserWarning):
    """Interaction data that loaded but holds something a user should know of: copied rows, users dropped for
    having too few interactions, columns left unread. The message counts it; ``hf-metaid`` prints it as one line,
    ``hf-metaid <command>: warning: ...``; ``warnings.simplefilter("error", DataWarning)`` makes it an error."""
