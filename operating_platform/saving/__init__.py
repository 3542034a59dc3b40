"""Saving episodes in the background while recording goes on."""

from .async_saver import AsyncEpisodeSaver, EpisodeSaveResult

__all__ = ["AsyncEpisodeSaver", "EpisodeSaveResult"]
