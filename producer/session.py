"""Where a command's Redis and workers come from, for the CLI and the Python API alike: the
configured Redis, or (no REDIS_URL) an embedded one with a local worker started when there is
work; and the dispatcher that enqueues on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from producer import embedded
from shared.core.exceptions import ServiceUnavailable
from shared.core.secrets import shown_url

if TYPE_CHECKING:
    from shared.ports import Dispatcher, Storage
    from shared.settings import Settings


def store_for(settings: Settings, url: str) -> Storage:
    from shared.adapters.redis.store import Store

    return Store.from_settings(settings, url)


@contextmanager
def redis_session(
    settings: Settings, services: embedded.LocalServices, say: Callable[[str], None] | None = None
) -> Iterator[tuple[Storage, Settings]]:
    """The configured Redis, or (no REDIS_URL) an embedded one whose data persists in the cache dir,
    said to `say`; with the settings that name it."""
    from shared.settings import check_store, with_overrides

    check_store(settings)  # no embedded Redis for a cluster's broker
    url = settings.redis_url
    embedded_redis = url is None
    if url is None:
        data_dir = settings.cache_dir / "redis"
        url, proc = embedded.start_redis(data_dir, persist=True)
        services.add_process(proc)
        settings = with_overrides(settings, redis_url=url)
        if say is not None:
            say(
                f"No REDIS_URL set: started an embedded Redis at {url} (data in {data_dir}); it stops when this command ends."
            )
    store = store_for(settings, url)
    try:
        store.ping()
        if embedded_redis:  # what the commands that used it before left behind has stopped with them
            store.retire_leftovers("interrupted: the command that ran it ended before it did")
    except store.errors as exc:
        raise ServiceUnavailable(f"Redis at {shown_url(url)} is unreachable: {exc}") from exc
    yield store, settings


def dispatcher_for(settings: Settings) -> Dispatcher:
    from shared.adapters.celery import CeleryDispatcher  # imported only when there is work to enqueue

    return CeleryDispatcher.from_settings(settings)


def local_dispatcher(
    settings: Settings, embedded_default: bool, start_worker: Callable[[], None]
) -> Callable[[], Dispatcher]:
    """A dispatcher made when there is work; the embedded default's worker is started first
    (`start_worker`: its own Redis, nobody else's worker listens there)."""

    def dispatcher() -> Dispatcher:
        if embedded_default:
            start_worker()
        return dispatcher_for(settings)

    return dispatcher
