"""Interaction loading, leave-one-out splitting and prompt building."""

from .interactions import embedded_beauty_path, load_interactions, user_sequences
from .splits import catalogue, leave_one_out

__all__ = ["catalogue", "embedded_beauty_path", "leave_one_out", "load_interactions", "user_sequences"]
