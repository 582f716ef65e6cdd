"""Exceptions users can catch by name.

Kept dependency-free and flat beside the model files, because a saved model folder carries its code files (and the
files they import) to the Hub for ``trust_remote_code`` loading.
"""


class MetaIDError(Exception):
    """Base class of every error hf_metaid raises on purpose."""


class InteractionFormatError(MetaIDError, ValueError):
    """An interaction file or dataset breaks a rule; the message names the file, line and rule."""


class UnknownEntityError(MetaIDError, KeyError):
    """A raw user or item id that the entity vocabulary does not contain."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class VocabularyMismatchError(MetaIDError, ValueError):
    """A tokenizer and a model built for different ID vocabularies were paired."""
