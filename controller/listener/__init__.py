"""The aiohttp listener: the trigger endpoint, error answers, rate limits, Alertmanager payloads.

``app`` builds the application from explicit dependencies (``deps``); ``handlers`` are its views;
``errors`` is the only place that shapes error answers; ``alertmanager`` and ``ratelimit`` are pure
helpers the trigger view uses; ``accesslog`` keeps tokens out of the access log; ``summary`` counts
hits for a line a minute; ``server`` serves the app within connection limits and timeouts.
"""

from controller.listener.accesslog import RedactingAccessLogger
from controller.listener.app import LISTENER_DEPS, TRIGGER_PATH, build_app
from controller.listener.deps import ListenerDeps
from controller.listener.errors import HttpError

__all__ = ["LISTENER_DEPS", "TRIGGER_PATH", "HttpError", "ListenerDeps", "RedactingAccessLogger", "build_app"]
