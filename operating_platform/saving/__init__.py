"""Saving episodes in the background while recording goes on."""

from .async_saver import AsyncEpisodeSaver, EpisodeHeld, EpisodeSaveResult, SaveQueueStatus, SaveTimeoutError

__all__ = ["AsyncEpisodeSaver", "EpisodeHeld", "EpisodeSaveResult", "SaveQueueStatus", "SaveTimeoutError"]
