"""Saving episodes in the background while recording goes on."""

from .async_saver import (
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SAVE_TIMEOUT_S,
    AsyncEpisodeSaver,
    EpisodeHeld,
    EpisodeSaveResult,
    SaveQueueStatus,
    SaveTimeoutError,
)

__all__ = [
    "DEFAULT_MAX_QUEUE_SIZE", "DEFAULT_MAX_RETRIES", "DEFAULT_SAVE_TIMEOUT_S",
    "AsyncEpisodeSaver", "EpisodeHeld", "EpisodeSaveResult", "SaveQueueStatus", "SaveTimeoutError",
]
