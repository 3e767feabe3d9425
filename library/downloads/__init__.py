"""The download queue: persistent tasks, resumable transfers, retries and limits.

It knows nothing about models. `DownloadEngine` moves bytes into ``.shelf/partial/`` and hands a
verified file to the installer it was given (see `library.installer`), which places it in the
library. Modules: `tasks` (the queue on disk), `engine` (the workers), `partial` (a task's data
and its running digests), `http` (HTTP failures -> our errors), `breaker` (per-host circuit
breaker), `throttle` (bandwidth limit), `progress` (events for subscribers).
"""

from .progress import ProgressBus, ProgressEvent
from .tasks import ControlRequest, DownloadTask, TaskOrigin, TaskState, TaskStore

__all__ = [
    "ControlRequest",
    "DownloadTask",
    "ProgressBus",
    "ProgressEvent",
    "TaskOrigin",
    "TaskState",
    "TaskStore",
]
