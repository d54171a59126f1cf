"""Fields that hold secrets in a component as Studio stores it, and a content hash that never sees
their values. Pure, no I/O.

Studio keeps a team's resolved component, `api_key` included. Drift detection hashes what a row
holds, and `producer pull` writes rows back to files: both go through `is_secret_field` so that a
secret value is neither hashed into Redis nor written into a file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

from shared.core.hashing import canonical_json

MASK = "***"
_NAMES = {
    "api_key",
    "apikey",
    "token",
    "access_token",
    "auth_token",
    "bearer_token",
    "azure_ad_token",
    "password",
    "secret",
    "client_secret",
    "aws_secret_access_key",
    "aws_session_token",
}
_SUFFIXES = ("_api_key", "_secret", "_password", "_access_token", "_auth_token")


def is_secret_field(name: str) -> bool:
    """`api_key`, `password`, `client_secret`...; not `max_tokens`."""
    low = name.lower()
    return low in _NAMES or low.endswith(_SUFFIXES)


# What a `${VAR}`'s name says of its value: a word of it (OPENAI_API_KEY, HF_TOKEN, DB_PASSWORD,
# githubPat) that ends so; AUTHOR_NAME is no secret. And the request headers a key or token goes in
# (a model's `default_headers`).
_SECRET_WORD = re.compile(r"(KEY|TOKEN|SECRETS?|PASSWORD|PASSWD|PASS|PWD|CREDENTIALS?|CREDS?|AUTH|BEARER|PAT)\Z")
_SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}


def names_a_secret(variable: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", variable).upper().split("_")
    return any(_SECRET_WORD.search(word) for word in words)


def holds_a_secret(name: str) -> bool:
    """A field whose text is a secret: a secret field (`api_key`) or a credential header."""
    return is_secret_field(name) or name.lower() in _SECRET_HEADERS


def _is_secret(key: object, value: object) -> bool:
    """A non-empty string in a secret field."""
    return isinstance(value, str) and bool(value) and is_secret_field(str(key))


def secret_fields(doc: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, value) of every non-empty secret string in `doc`."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            where = f"{path}.{key}" if path else str(key)
            if _is_secret(key, value):
                yield where, value
            else:
                yield from secret_fields(value, where)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from secret_fields(value, f"{path}[{i}]")


def mask_secrets(doc: Any) -> Any:
    """`doc` with every secret field's value replaced by a mask (empty values stay as they are)."""
    if isinstance(doc, dict):
        return {k: MASK if _is_secret(k, v) else mask_secrets(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [mask_secrets(v) for v in doc]
    return doc


def content_hash(component: object) -> str:
    """What a Studio row holds, as a hash that changes with every edit but a secret's value."""
    return hashlib.sha256(canonical_json(mask_secrets(component)).encode("utf-8")).hexdigest()


def shown_url(url: str) -> str:
    """`url` as it may be printed: a password in it (redis://:pw@host) masked."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:{MASK}@{host}"
