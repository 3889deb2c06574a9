"""The `apprise` target kind: a list of Apprise URLs (Slack, Teams, PagerDuty, Matrix, `mailto://`,
`json://` webhooks and the rest of https://github.com/caronc/apprise/wiki), all sent each message.

Apprise is synchronous; the notifier calls `deliver` in its own daemon threads and stops waiting after its
timeout. Apprise is told to run the URLs one after the other in that thread (no `async_mode`, no
`service_timeout`): otherwise it runs them in its own process-wide pool, whose threads Python joins at exit
(a hung service kept a stopped engine alive) and which every target shares. Each URL's socket connect and
read timeouts (`cto`, `rto`) are cut to the delivery's timeout, so a hung service gives its thread back.
A delivery counts as done only when every URL accepted it: a partial success is a failure (retried whole,
so a service that did receive it may see it twice, never none)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import apprise
from apprise.apprise import N_MGR

from engine.notify.base import ENV_REF, Message, NotifyError, Target, expand_env

_TYPES = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
          "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}
ERROR_CHARS = 500  # of the services' own words kept in a failure


class _Scrub(logging.Filter):
    """On Apprise's logger: every value a `${NAME}` brought into a URL is masked out of Apprise's own
    records (it logs URLs and payloads at debug, and the words kept in a failure come from there)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = _masking(record.getMessage(), self.secrets)
            record.msg, record.args = text, None
        return True


_SCRUB = _Scrub()
logging.getLogger("apprise").addFilter(_SCRUB)


class AppriseTarget(Target):
    kind = "apprise"

    def __init__(self, name: str, spec: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        super().__init__(name, spec, environ)
        asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        self._apprise = apprise.Apprise(asset=asset)
        self._secrets: list[str] = []
        for index, url in enumerate(spec["urls"]):
            where = f"notifications.targets.{name}.urls[{index}]"
            expanded, values = expand_env(url, environ, where), _env_values(url, environ)
            _SCRUB.secrets.update(values)  # before Apprise logs the URL it loads
            service = apprise.Apprise.instantiate(expanded, asset=asset)
            if not service:
                raise NotifyError(f"{where}: {_refused(url)}")
            self._apprise.add(service)
            self._secrets += [s for s in (getattr(service, "password", None), *values) if s]

    @classmethod
    def spec_problems(cls, spec: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Each URL built as the engine will build it; one with `${VAR}` in it only has its scheme checked
        (its values are the engine's environment's, unknown here)."""
        out = []
        for index, url in enumerate(spec["urls"]):
            if ENV_REF.search(url):
                scheme, sep, _ = url.partition("://")
                usable = not sep or ENV_REF.search(scheme) or scheme.lower() in N_MGR
            else:
                usable = bool(apprise.Apprise.instantiate(url))
            if not usable:
                out.append((f"/urls/{index}", _refused(url)))
        return out

    def describe(self) -> list[str]:
        return [self._scrub(service.url(privacy=True)) for service in self._apprise]

    def deliver(self, message: Message, timeout_s: float) -> None:
        for service in self._apprise:
            service.socket_connect_timeout = min(service.socket_connect_timeout, timeout_s)
            service.socket_read_timeout = min(service.socket_read_timeout, timeout_s)
        try:
            result = self._apprise.notify(body=message.body or message.title, title=message.title,
                                          notify_type=_TYPES.get(message.level, apprise.NotifyType.INFO))
        except Exception as exc:  # a plugin's own bug must be a failed delivery, not a dead notifier
            raise NotifyError(self._scrub(f"{type(exc).__name__}: {exc}")) from None
        if result:
            return
        failed = [service for service in result if not service]
        words = "; ".join(f"{service.name} {service.url}: " + " / ".join(e.message for e in service.logs())
                          for service in failed) or f"Apprise: {result.status.name.lower()}"
        raise NotifyError(self._scrub(words)[:ERROR_CHARS])

    def _scrub(self, text: str) -> str:
        return _masking(text, self._secrets)


def _masking(text: str, secrets: set[str] | list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # a longer secret first: none is left half shown
        text = text.replace(secret, "****")
    return text


def _env_values(url: str, environ: Mapping[str, str]) -> list[str]:
    """The values `${NAME}` brought into `url`, as they are and URL-quoted: secrets by construction."""
    values = [environ[name] for name in ENV_REF.findall(url) if environ.get(name)]
    return values + [quoted for quoted in (quote(v, safe="") for v in values) if quoted not in values]


def _refused(url: str) -> str:
    return f"Apprise cannot use this URL (unknown scheme or missing fields): {_masked(url)}"


def _masked(url: str) -> str:
    """A URL Apprise refused, shown without what could be a password (`user:****@host`)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":****"
    return f"{scheme}{sep}{credentials}{at}{host}"
