"""Async client for the AutoGen Studio 0.4.x REST API (aiohttp), with retries on transient failures:
the Studio port (shared/ports.py).

aiohttp rather than httpx: measured here, httpx took 1.2 ms of CPU per request alone and 3.3 ms at
16 in flight (its pool looks at every connection for each request), aiohttp 0.3 to 0.4 ms; a sync
of 1,000 teams on 2 cores shares them with Studio."""

from __future__ import annotations

import html
import json
import re
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from shared.adapters.answer_limits import MAX_ANSWER_BYTES
from shared.adapters.studio_answers import ANY, ROW, ROWS, SAVED, VERDICT, VERSION, Shape
from shared.core.exceptions import MalformedAnswer
from shared.core.gallery_answer import without_components
from shared.core.json_text import dumps
from shared.core.refs import redact
from shared.core.secrets import shown_url
from shared.metrics import Metrics, endpoint_template
from shared.ports import StudioError
from shared.retry import classify, is_retryable, not_http, retrying, unreached

if TYPE_CHECKING:  # read for its values only: the import costs pydantic where no client is made
    from shared.settings import Settings

# a whole answer takes at most this many timeouts: a server that sends a byte at a time would
# otherwise restart the read timeout with each one, forever
WHOLE_ANSWER_TIMEOUTS = 4


class AnswerTooBig(Exception):
    """An answer past MAX_ANSWER_BYTES (as unpacked): not read on, not asked again."""


class AnswerStatus(Exception):
    """An answer with an error status (not 2xx): what shared/retry.py judges (status, Retry-After)."""

    def __init__(self, status: int, headers: Mapping[str, str], text: str) -> None:
        super().__init__(status)
        self.status_code = status
        self.headers = headers
        self.text = text


def _proxy_for(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY and NO_PROXY name for `url`, read once per client (aiohttp's
    trust_env would read them, and parse ~/.netrc, on every request)."""
    parts = urllib.parse.urlsplit(url)
    # the host with its port: NO_PROXY may name either
    if parts.hostname is None or urllib.request.proxy_bypass(parts.netloc):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class StudioClient:
    def __init__(
        self,
        base_url: str,
        user_id: str,
        *,
        token: str | None = None,
        timeout: float = 15.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_connections: int = 16,
        metrics: Metrics | None = None,
    ) -> None:
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._token = token
        self.user_id = user_id
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.requests: Counter[str] = Counter()  # "METHOD /path" -> count, for run reports
        self.metrics = metrics or Metrics()
        self._base = base_url.rstrip("/") + "/api"
        # each step (a free connection, the connect, every read) waits at most `timeout`, as httpx's did
        self._timeout = aiohttp.ClientTimeout(
            total=timeout * WHOLE_ANSWER_TIMEOUTS, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._max_connections = max_connections
        self._proxy = _proxy_for(self._base)
        self._http: aiohttp.ClientSession | None = None  # made on the first call, inside the event loop

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                json_serialize=dumps,  # orjson: a 10,000-component gallery entry in 4 ms, not 27
                proxy=self._proxy,
            )
        return self._http

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        base_url: str,
        user_id: str,
        *,
        max_connections: int = 16,
        metrics: Metrics | None = None,
    ) -> StudioClient:
        """A client for Studio at `base_url` as `user_id`, with the token, timeout and retries the
        settings say (the producer's Studio is its settings'; a worker's is the run's)."""
        token = settings.studio_token.get_secret_value() if settings.studio_token else None
        return cls(
            base_url,
            user_id,
            token=token,
            timeout=settings.studio_timeout_seconds,
            retries=settings.studio_retries,
            backoff=settings.studio_backoff_seconds,
            max_connections=max_connections,
            metrics=metrics,
        )

    async def __aenter__(self) -> StudioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        max_timeouts: int | None = None,
        expect: Shape = ANY,
        read: Callable[[bytes], Any] = json.loads,
        **kwargs: Any,
    ) -> Any:
        """One call under the retry policy (shared/retry.py). `retry=False` for a write that is not
        idempotent (the caller looks before it tries again); `max_timeouts` for a call too
        expensive for the server to repeat blindly once it has timed out that often; `expect`:
        what the answer must hold (one that does not is retried as a 5xx is); `read`: how its JSON
        is read."""
        timeouts = 0

        def too_many_timeouts(exc: BaseException) -> bool:
            nonlocal timeouts
            found = classify(exc)
            timeouts += found is not None and found.cause == "timeout"
            return max_timeouts is not None and timeouts >= max_timeouts

        def on_retry(cause: str) -> None:
            self.metrics.inc("agentq_retries_total", ["studio", cause])

        try:
            async for attempt in retrying(
                self.retries + 1 if retry else 1, self.backoff, on_retry, give_up=too_many_timeouts
            ):
                with attempt:
                    return await self._once(method, path, expect, read, **kwargs)
        except MalformedAnswer as exc:
            raise StudioError(method, path, 200, str(exc), retryable=True) from exc
        except AnswerTooBig as exc:
            raise StudioError(method, path, 200, str(exc)) from exc
        except AnswerStatus as exc:
            raise StudioError(method, path, exc.status_code, self._said(_gist(exc.text)), is_retryable(exc)) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            if max_timeouts is not None and timeouts >= max_timeouts:
                raise StudioError(method, path, None, f"timed out {timeouts} times; not sent again") from exc
            # aiohttp's own words may quote what the server sent (an echoed token among them)
            said = self._said(_unreached(exc))
            if self._proxy:  # what could not be reached may be the proxy
                said += f" (through the proxy {shown_url(self._proxy)}, from HTTP_PROXY)"
            raise StudioError(
                method, path, None, said, is_retryable(exc), timed_out=isinstance(exc, TimeoutError)
            ) from exc
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, expect: Shape, read: Callable[[bytes], Any], **kwargs: Any) -> Any:
        started = time.perf_counter()
        status = "error"
        try:
            self.requests[f"{method} {path.split('?')[0]}"] += 1
            async with self._session().request(method, self._base + path, allow_redirects=False, **kwargs) as answer:
                status = str(answer.status)
                raw = await _read(answer)
                if not 200 <= answer.status < 300:  # a redirect too: Studio's paths are written as it serves them
                    raise AnswerStatus(answer.status, answer.headers, raw.decode("utf-8", "replace"))
            try:
                body = read(raw)
            except RecursionError as exc:
                raise MalformedAnswer("the answer is JSON nested too deeply to read") from exc
            except ValueError as exc:
                raise MalformedAnswer(
                    f"the answer is not JSON: {self._said(raw.decode('utf-8', 'replace'))[:120]!r}"
                ) from exc
            if not isinstance(body, dict) or not expect[0](body):
                raise MalformedAnswer(
                    f"the answer is not {expect[1]}: {self._said(raw.decode('utf-8', 'replace'))[:120]!r}"
                )
            return body
        finally:
            self.metrics.observe(
                "agentq_studio_request_duration_seconds",
                [endpoint_template(path), method, status],
                time.perf_counter() - started,
            )

    def _said(self, text: str) -> str:
        """What Studio (or a proxy before it) answered, as it may be shown: the token masked, should
        the answer echo the request's headers."""
        return redact(text, [self._token]) if self._token else text  # in every form a page may echo it

    async def health(self) -> bool:
        data = await self.request("GET", "/health", retry=False)
        return bool(data.get("status"))

    async def version(self) -> str | None:
        data = await self.request("GET", "/version", expect=VERSION)
        return cast("str", data["data"]["version"]) or None

    async def validate(self, component: dict[str, Any]) -> list[str]:
        """Studio's own validation errors for a component ([] when valid)."""
        # validation builds every agent and model client: a request that timed out twice is not sent again
        data = await self.request("POST", "/validate/", json={"component": component}, max_timeouts=2, expect=VERDICT)
        if data["is_valid"]:
            return []
        errors = data.get("errors") if isinstance(data.get("errors"), list) else []
        said = [f"{e.get('field')}: {e.get('error')}" if isinstance(e, dict) else str(e) for e in errors]
        return said or ["invalid (no details given)"]

    async def list_teams(self) -> list[dict[str, Any]]:
        return await self._list("/teams/")

    async def get_team(self, team_id: int) -> dict[str, Any] | None:
        return await self._get(f"/teams/{team_id}", absent=(404,))

    async def save_team(self, component: dict[str, Any], version: str, team_id: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"user_id": self.user_id, "component": component, "version": version}
        if team_id is not None:
            body["id"] = team_id
        # An update is idempotent and safe to retry; a create is retried by the caller,
        # which first looks for a row that a lost response may have created.
        data = await self.request("POST", "/teams/", json=body, retry=team_id is not None, expect=SAVED)
        return cast("dict[str, Any]", data["data"])  # SAVED: a dict

    async def list_galleries(self) -> list[dict[str, Any]]:
        return await self._list("/gallery/")

    async def get_gallery(self, gallery_id: int) -> dict[str, Any] | None:
        return await self._get(f"/gallery/{gallery_id}", absent=(403, 404))

    async def _list(self, path: str) -> list[dict[str, Any]]:
        """The user's rows at `path`."""
        return cast(
            "list[dict[str, Any]]",
            (await self.request("GET", path, params={"user_id": self.user_id}, expect=ROWS))["data"],
        )

    async def _get(self, path: str, absent: tuple[int, ...]) -> dict[str, Any] | None:
        """The user's row at `path`; None when Studio answers with a status in `absent`."""
        try:
            data = await self.request("GET", path, params={"user_id": self.user_id}, expect=ROW)
        except StudioError as exc:
            if exc.status in absent:
                return None
            raise
        return cast("dict[str, Any] | None", data.get("data"))  # ROW: a dict or None

    async def save_gallery(self, config: dict[str, Any], gallery_id: int | None = None) -> dict[str, Any]:
        """The row saved, without its config's components (which are `config`)."""
        body = {"user_id": self.user_id, "config": config}
        if gallery_id is None:
            data = await self.request(
                "POST", "/gallery/", json=body, retry=False, expect=SAVED, read=without_components
            )
        else:
            params = {"user_id": self.user_id}
            data = await self.request(
                "PUT", f"/gallery/{gallery_id}", params=params, json=body, expect=SAVED, read=without_components
            )
        return cast("dict[str, Any]", data["data"])  # SAVED: a dict


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_NOT_TEXT = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def _gist(text: str) -> str:
    """What an error answer says, in a line: an HTML page (another server's, a proxy's) by its
    title, or else its text (no markup, scripts or styles); entities decoded, so that a secret it
    echoes is scrubbed as any other; any other text cut at 500 characters."""
    if not text.lstrip().startswith("<"):
        return text[:500]
    title = _TITLE.search(text)
    if title and (said := " ".join(html.unescape(_NOT_TEXT.sub(" ", title.group(1))).split())):
        return f"an HTML page titled {said[:120]!r}"
    return f"an HTML page: {' '.join(html.unescape(_NOT_TEXT.sub(' ', text)).split())[:200]}".rstrip(": ")


def _unreached(exc: BaseException) -> str:
    """Why no answer came, in a few words (aiohttp's own text names the host and the OS call)."""
    if (lost := unreached(exc) or not_http(exc)) is not None:
        return lost
    if isinstance(exc, TimeoutError):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def _read(answer: aiohttp.ClientResponse) -> bytes:
    """The answer's body as unpacked, up to MAX_ANSWER_BYTES."""
    chunks, size = [], 0
    async for chunk in answer.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise AnswerTooBig(f"the answer is over {MAX_ANSWER_BYTES:,} bytes: not read")
        chunks.append(chunk)
    return b"".join(chunks)
