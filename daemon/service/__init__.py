"""The compose layer: the poll loop (Monitor, run), the daemon around it, the instance lock, sd_notify."""

from .daemon import Daemon, run_daemon
from .lock import InstanceLock
from .monitor import Monitor, Poll, run
from .notify import sd_notify

__all__ = ["Daemon", "InstanceLock", "Monitor", "Poll", "run", "run_daemon", "sd_notify"]
