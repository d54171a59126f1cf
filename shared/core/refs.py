"""`{"$ref": "<label>"}` references and `${VAR}` placeholders inside a component. No I/O."""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shared.core.exceptions import InvalidInput
from shared.core.secrets import holds_a_secret, names_a_secret

REF_KEY = "$ref"
# ${NAME} is replaced from the environment, ${NAME:-default} falls back to `default` when NAME
# is unset, and $${NAME} stays as the literal text ${NAME}.
_VAR = re.compile(r"\$(\$?)\{([^}:]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_ref(node: object) -> bool:
    """A mapping that is one of our references. `{"$ref": "#/$defs/Item"}` is JSON Schema's own (a
    structured output's schema, as AutoGen exports it): a reference within that schema, kept as written."""
    if not (isinstance(node, dict) and REF_KEY in node):
        return False
    target = node[REF_KEY]
    return not (isinstance(target, str) and target.startswith("#"))


def _walk(node: object, path: str) -> Iterator[tuple[str, object]]:
    yield path, node
    for child_path, value in _children(node, path):
        yield from _walk(value, child_path)


def _children(node: object, path: str) -> Iterator[tuple[str, object]]:
    """(field_path, value) of each member of a mapping or list; none below a `$ref`."""
    if isinstance(node, dict) and not is_ref(node):
        for key, value in node.items():
            yield (f"{path}.{key}" if path else str(key)), value
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield f"{path}[{i}]", value


def find_refs(doc: object) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Return ([(field_path, label)], [(field_path, problem)]) for every `$ref` in `doc`."""
    refs: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    for path, node in _walk(doc, ""):
        if not is_ref(node):
            continue
        assert isinstance(node, dict)
        problem = _ref_problem(node)
        if problem is None:
            refs.append((path, node[REF_KEY]))
        else:
            problems.append((path, problem))
    return refs, problems


def _ref_problem(node: dict[str, Any]) -> str | None:
    if len(node) != 1:
        return '"$ref" must be the only key of its mapping'
    target = node[REF_KEY]
    if not isinstance(target, str) or not target:
        return '"$ref" must name a component label (a non-empty string)'
    return None


def inline_refs(doc: Any, resolve: Callable[[str], Any]) -> Any:
    """Copy of `doc` with every `{"$ref": label}` replaced by `resolve(label)`."""
    if isinstance(doc, dict):
        if is_ref(doc):
            return resolve(doc[REF_KEY])
        return {k: inline_refs(v, resolve) for k, v in doc.items()}
    if isinstance(doc, list):
        return [inline_refs(v, resolve) for v in doc]
    return doc


def find_variables(doc: object) -> list[tuple[str, str]]:
    """[(field_path, variable_name)] for every `${VAR}` in a string value; bad names included as-is,
    and a default that holds another `${` as `NAME:-DEFAULT` (nested defaults are not read as such)."""
    return [
        (path, name if default is None else f"{name}:-{default}")
        for path, name, default in _placeholders(doc)
        if default is None or NESTED in default
    ]


NESTED = "${"  # in a default: `${A:-${B}}` would send the text `${B}` when A is unset


def _placeholders(doc: object) -> Iterator[tuple[str, str, str | None]]:
    """(field_path, name, default or None) of every `${...}` in a string value, `$${...}` left out."""
    for path, node in _walk(doc, ""):
        if isinstance(node, str):
            for match in _VAR.finditer(node):
                escaped, name, default = match.groups()
                if not escaped:
                    yield path, name, default


def literal_text(text: str) -> str:
    """`text` written so that substituting variables gives it back: each `${...}` in it escaped."""
    return _VAR.sub(lambda m: "$" + m.group(0), text)


def is_valid_variable_name(name: str) -> bool:
    return bool(_NAME.match(name))


class MissingVariable(InvalidInput):
    def __init__(self, name: str, field: str) -> None:
        super().__init__(f"environment variable {name} is not set")
        self.name = name
        self.field = field


def substitute_variables(doc: Any, env: Mapping[str, str]) -> Any:
    """Copy of `doc` with `${VAR}` replaced from `env`; raises MissingVariable naming the field."""
    # one frame a level (no helper in between): a deep document recurses no deeper than it did
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            try:
                out[k] = substitute_variables(v, env)
            except MissingVariable as exc:  # the field's path is built only on the way out of an error
                exc.field = _field_path(f"{k}", exc.field)
                raise
        return out
    if isinstance(doc, list):
        items = []
        for i, v in enumerate(doc):
            try:
                items.append(substitute_variables(v, env))
            except MissingVariable as exc:
                exc.field = _field_path(f"[{i}]", exc.field)
                raise
        return items
    if isinstance(doc, str) and "${" in doc:
        return _VAR.sub(lambda match: _replacement(match, env), doc)
    return doc


def _field_path(step: str, field: str) -> str:
    """`step` (a key, or `[i]`) in front of the path below it."""
    return f"{step}.{field}" if field and not field.startswith("[") else f"{step}{field}"


def _replacement(match: re.Match[str], env: Mapping[str, str]) -> str:
    """What one `${VAR}`, `${VAR:-default}` or `$${...}` stands for; MissingVariable for an unset VAR."""
    escaped, name, default = match.groups()
    if escaped:
        return match.group(0)[1:]
    value = env.get(name, default)
    if value is None:
        raise MissingVariable(name, "")
    return value


FRAGMENT = 8  # a run of this many characters of a secret is scrubbed wherever it stands
MIN_SECRET = 8  # see secret_values


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret scrubbed, and every fragment of one too: servers shorten what they
    quote (pydantic writes "sk-abc...xyz"), and half a key is still a leak. Each secret also as a
    server may quote it: JSON-escaped (once or twice, `\u00e9` or not), URL-encoded, and each of
    those HTML-escaped (an error page that echoes the request)."""
    for value in secrets:
        forms = _forms(value)
        for form in forms:  # whole first: a fragment of one form may be part of another
            text = text.replace(form, "***")
        for form in forms:
            if len(form) >= FRAGMENT:
                text = _scrub_fragments(text, form)
    return text


def _forms(value: str) -> list[str]:
    """`value` and the ways a server's message may write it, longest first."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    for ascii_only in (True, False):
        once = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms |= {once, json.dumps(once, ensure_ascii=ascii_only)[1:-1]}
    for form in list(forms):  # the entities pages use for & < > " ': Python's, and the numeric ones
        escaped = html.escape(form, quote=True)
        forms |= {
            escaped,
            html.escape(form, quote=False),
            escaped.replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        }
    return sorted(forms, key=len, reverse=True)


def redact_all(value: Any, secrets: list[str]) -> Any:
    """`value` (JSON data) with every string in it redacted: a transcript's tool calls and results
    carry a model's and a tool's text in fields of their own."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_all(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_all(v, secrets) for v in value]
    return value


def _scrub_fragments(text: str, value: str) -> str:
    """`text` with each run of FRAGMENT or more characters of `value` replaced by `***`."""
    grams = {value[i : i + FRAGMENT] for i in range(len(value) - FRAGMENT + 1)}
    out, i = [], 0
    while i < len(text):
        if text[i : i + FRAGMENT] in grams:
            end = i + FRAGMENT
            while end < len(text) and text[i : end + 1] in value:
                end += 1
            out.append("***")
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def secret_values(spec: object, env: Mapping[str, str]) -> list[str]:
    """What no text may show, longest first (so no part of one survives): each secret field's value
    (`api_key`, an `Authorization` header), written out or resolved from its `${VAR}`s; the value of
    every `${VAR}` whose name says it is a secret (`*_KEY`, `*TOKEN*`, `*PASSWORD*` ...) or that is a
    URL's password, wherever it is used. Other `${VAR}`s (a model's name, a base URL, a company in a
    system message) are the model's to see and to repeat: scrubbing them would change its answers
    and what dependent tasks are given. A value shorter than MIN_SECRET is no key or token ("none",
    "EMPTY" and "ollama" are what local servers take) and is left as it is, for the same reason."""
    values = {node for path, node in _walk(spec, "") if isinstance(node, str) and _literal_secret(path, node)}
    values |= {env[name] for name, _default, secret in _placeholders_judged(spec) if secret and env.get(name)}
    return sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True)


def plain_variables(spec: object) -> list[tuple[str, str | None]]:
    """(name, default) of each `${VAR}` in `spec` that is no secret (see secret_values): its value
    is part of what the component is, so a changed value is a changed component (cache keys)."""
    found = {(n, d) for n, d, secret in _placeholders_judged(spec) if not secret and is_valid_variable_name(n)}
    return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))


def shown(written: object, resolved: object) -> str:
    """A value as errors and metrics may name it (a model's name): as resolved when none of its
    `${VAR}`s is a secret, else as written (`${MODEL_TOKEN}`, never its value)."""
    if not isinstance(written, str) or "${" not in written:
        return str(written)
    plain = not any(secret for _name, _default, secret in _placeholders_judged(written))
    return str(resolved) if plain and isinstance(resolved, str) else written


def _literal_secret(path: str, text: str) -> bool:
    return "${" not in text and holds_a_secret(path.rpartition(".")[2])


def _placeholders_judged(spec: object) -> Iterator[tuple[str, str | None, bool]]:
    """(name, default, whether its value is a secret) of every `${...}` in a string of `spec`."""
    for path, node in _walk(spec, ""):
        if not isinstance(node, str) or "${" not in node:
            continue
        secret_field = holds_a_secret(path.rpartition(".")[2])
        for match in _VAR.finditer(node):
            escaped, name, default = match.groups()
            if not escaped:
                yield name, default, secret_field or names_a_secret(name) or _in_userinfo(node, match)


def _in_userinfo(text: str, match: re.Match[str]) -> bool:
    """The placeholder stands in a URL's `user:password@` part."""
    return bool(re.search(r"://[^/@\s]*\Z", text[: match.start()])) and "@" in text[match.end() :].split("/")[0]


def file_at(files: Mapping[str, str], at: str) -> tuple[str, str]:
    """The file whose component holds field path `at` of a resolved spec (`files`: Tree.files_within),
    and the path of `at` inside that file's component."""
    best = max((k for k in files if k == at or not k or at.startswith((f"{k}.", f"{k}["))), key=len, default="")
    return files.get(best, ""), at[len(best) :].lstrip(".")
