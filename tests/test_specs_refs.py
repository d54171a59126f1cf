"""shared.core.specs.validate_spec and shared.core.refs: references and ${VAR} placeholders."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import components
from shared.core.errors import ConfigError
from shared.core.refs import (
    MissingVariable,
    find_refs,
    find_variables,
    inline_refs,
    is_valid_variable_name,
    substitute_variables,
)
from shared.core.specs import ComponentSpec, validate_spec

HYPO = settings()


def spec(**overrides):
    doc = {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "version": 1,
        "component_version": 1,
        "label": "writer",
        "description": "writes",
        "config": {"name": "writer"},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def errors_of(doc, path="agents/writer.yaml") -> list[ConfigError]:
    result = validate_spec(path, doc)
    assert isinstance(result, list), f"expected errors, got {result!r}"
    assert result, "an invalid spec must give at least one error"
    assert all(e.path == path for e in result)
    return result


# --- specs ----------------------------------------------------------------------------------------


def test_valid_spec_is_accepted_and_keeps_extra_keys():
    result = validate_spec("a.yaml", spec(extra_key={"kept": True}))
    assert isinstance(result, ComponentSpec)
    assert result.label == "writer"
    assert result.component_type == "agent"
    assert result.model_dump()["extra_key"] == {"kept": True}


@pytest.mark.parametrize("ctype", components.component_types())
def test_every_component_type_is_accepted(ctype):
    assert isinstance(validate_spec("a.yaml", spec(component_type=ctype)), ComponentSpec)


def test_all_seven_autogen_component_types_are_known():
    assert set(components.component_types()) == {
        "model",
        "agent",
        "team",
        "tool",
        "termination",
        "workbench",
        "chat_completion_context",
    }


def test_unknown_component_type_names_the_value_and_the_choices():
    (err,) = errors_of(spec(component_type="agnet"))
    assert err.field == "component_type"
    assert "unknown component type 'agnet'" in err.message
    for ctype in components.component_types():
        assert ctype in err.message
    assert "agents/writer.yaml: component_type:" in str(err)


@pytest.mark.parametrize("field", ["label", "provider", "config", "component_type"])
def test_missing_required_field_is_named(field):
    (err,) = errors_of(spec(**{field: ...}))
    assert err.field == field
    assert err.message == "required field is missing"
    assert f"agents/writer.yaml: {field}: required field is missing" == str(err)


@pytest.mark.parametrize(("text", "read_as"), [("no", "bool False"), ("1.10", "float 1.1"), ("2024-01-02", "date")])
def test_a_label_yaml_read_as_another_type_says_what_it_was_read_as(text: str, read_as: str) -> None:
    """`label: no` said only "Input should be a valid string": YAML 1.1 reads it as false."""
    doc = yaml.safe_load(f"provider: p.C\ncomponent_type: agent\nlabel: {text}\nconfig: {{}}\n")
    (err,) = errors_of(doc)
    assert err.field == "label" and f"YAML read it as {read_as}" in err.message and "quote it" in err.message


def test_several_missing_fields_are_all_named():
    errs = errors_of({"component_type": "model"})
    assert {e.field for e in errs} == {"label", "provider", "config"}


@pytest.mark.parametrize("field", ["label", "provider"])
def test_empty_label_or_provider_is_an_error(field):
    (err,) = errors_of(spec(**{field: ""}))
    assert err.field == field


@pytest.mark.parametrize("label", ["   ", "\t\n"])
def test_a_blank_label_is_an_error_as_an_empty_one_is(label):
    (err,) = errors_of(spec(label=label))
    assert err.field == "label" and "blank" in err.message


def test_a_studio_gallery_entry_or_team_row_is_said_to_be_one():
    gallery = {"id": "g", "name": "g", "metadata": {}, "components": {"agents": [], "models": []}}
    row = {"id": 3, "user_id": "u", "version": "1", "component": spec(component_type="team")}
    for doc, what in ((gallery, "gallery entry"), (row, "team row")):
        (err,) = errors_of(doc)
        assert what in err.message and "producer pull" in err.message


def test_config_must_be_a_mapping():
    (err,) = errors_of(spec(config=["a"]))
    assert err.field == "config"


def test_label_must_be_a_string_not_a_number():
    (err,) = errors_of(spec(label=5))
    assert err.field == "label"


def test_nested_error_field_is_a_dotted_path():
    errs = errors_of(spec(config={1: "x"}))
    assert any(e.field and e.field.startswith("config") for e in errs)


# --- find_refs / inline_refs ----------------------------------------------------------------------


TEAM = {
    "label": "team",
    "config": {
        "participants": [{"name": "inline"}, {"$ref": "writer"}, {"$ref": "critic"}],
        "termination_condition": {"$ref": "max-12"},
        "nested": {"deeper": [[{"$ref": "model"}]]},
    },
}


def test_a_function_tool_whose_source_does_not_compile_is_named_by_its_field():
    """AutoGen's load of the tool fails (and with it every agent using it): the tool's file says why."""

    tool = yaml.safe_load((Path(__file__).resolve().parent.parent / "examples" / "tools" / "add.yaml").read_text())
    assert isinstance(validate_spec("tools/add.yaml", tool), ComponentSpec)
    broken = copy.deepcopy(tool)
    broken["config"]["source_code"] = "def add(a: int) -> int\n    return a +\n"
    errors = validate_spec("tools/add.yaml", broken)
    assert isinstance(errors, list) and [(e.path, e.field) for e in errors] == [
        ("tools/add.yaml", "config.source_code")
    ]
    assert errors[0].message.startswith("does not compile: ") and "(line 1)" in errors[0].message
    nul = {**broken, "config": {**broken["config"], "source_code": "x = 1\x00"}}
    assert [e.field for e in validate_spec("t.yaml", nul)] == ["config.source_code"]
    # only a FunctionTool's source is code
    other = {**broken, "provider": "my.tools.Shell"}
    assert isinstance(validate_spec("t.yaml", other), ComponentSpec)


def test_refs_are_found_with_field_paths():
    refs, problems = find_refs(TEAM)
    assert problems == []
    assert sorted(refs) == sorted(
        [
            ("config.participants[1]", "writer"),
            ("config.participants[2]", "critic"),
            ("config.termination_condition", "max-12"),
            ("config.nested.deeper[0][0]", "model"),
        ]
    )


def test_no_refs_in_a_plain_document():
    assert find_refs({"config": {"a": [1, {"b": "$ref"}], "ref": "x"}}) == ([], [])


def test_ref_with_extra_keys_is_a_problem_not_a_ref():
    refs, problems = find_refs({"config": {"model_client": {"$ref": "m", "override": 1}}})
    assert refs == []
    assert len(problems) == 1
    field, message = problems[0]
    assert field == "config.model_client"
    assert "only key" in message


@pytest.mark.parametrize("target", ["", 5, None, ["a"], {"x": 1}])
def test_ref_target_must_be_a_non_empty_string(target):
    refs, problems = find_refs({"config": {"tools": [{"$ref": target}]}})
    assert refs == []
    assert [f for f, _ in problems] == ["config.tools[0]"]
    assert "non-empty string" in problems[0][1]


def test_inline_refs_replaces_each_ref_and_leaves_input_alone():
    original = copy.deepcopy(TEAM)
    resolved = inline_refs(TEAM, lambda label: {"resolved": label})
    assert original == TEAM
    assert resolved["config"]["participants"] == [{"name": "inline"}, {"resolved": "writer"}, {"resolved": "critic"}]
    assert resolved["config"]["termination_condition"] == {"resolved": "max-12"}
    assert resolved["config"]["nested"]["deeper"] == [[{"resolved": "model"}]]
    assert find_refs(resolved) == ([], [])


# --- variables --------------------------------------------------------------------------------------


def test_find_variables_reports_only_required_ones_with_paths():
    doc = {
        "config": {
            "api_key": "${OPENAI_API_KEY}",
            "base_url": "${BASE_URL:-http://localhost}",
            "literal": "$${NOT_A_VAR}",
            "list": ["x", "pre-${A}-mid-${B}-post"],
            "number": 5,
        }
    }
    assert find_variables(doc) == [
        ("config.api_key", "OPENAI_API_KEY"),
        ("config.list[1]", "A"),
        ("config.list[1]", "B"),
    ]


def test_find_variables_reports_bad_names_as_written():
    found = find_variables({"a": "${1BAD}", "b": "${}", "c": "${has space}"})
    assert [name for _, name in found] == ["1BAD", "", "has space"]
    assert not any(is_valid_variable_name(name) for _, name in found)


@pytest.mark.parametrize(
    "name,ok",
    [
        ("A", True),
        ("_x1", True),
        ("OPENAI_API_KEY", True),
        ("1A", False),
        ("", False),
        ("A-B", False),
        ("A B", False),
        ("A\n", False),
    ],
)
def test_variable_names(name, ok):
    assert is_valid_variable_name(name) is ok


def test_substitution_from_env():
    doc = {"config": {"api_key": "${KEY}", "url": "http://${HOST}:${PORT}/v1", "n": 3, "flag": True, "none": None}}
    out = substitute_variables(doc, {"KEY": "sk-1", "HOST": "h", "PORT": "8080"})
    assert out == {"config": {"api_key": "sk-1", "url": "http://h:8080/v1", "n": 3, "flag": True, "none": None}}


def test_substitution_does_not_modify_the_input():
    doc = {"config": {"a": ["${X}"]}}
    substitute_variables(doc, {"X": "1"})
    assert doc == {"config": {"a": ["${X}"]}}


def test_default_used_only_when_unset():
    doc = {"a": "${X:-fallback}", "b": "${Y:-}", "c": "${Z:-http://h:1/p}"}
    assert substitute_variables(doc, {}) == {"a": "fallback", "b": "", "c": "http://h:1/p"}
    assert substitute_variables(doc, {"X": "set", "Y": "y", "Z": "z"}) == {"a": "set", "b": "y", "c": "z"}


def test_empty_value_counts_as_set():
    assert substitute_variables({"a": "${X:-d}"}, {"X": ""}) == {"a": ""}


def test_escape_keeps_the_literal_placeholder():
    doc = {"a": "$${X}", "b": "cost: $${X} and ${X}", "c": "$${X:-d}"}
    assert substitute_variables(doc, {"X": "v"}) == {"a": "${X}", "b": "cost: ${X} and v", "c": "${X:-d}"}


def test_escaped_placeholder_needs_no_variable():
    assert substitute_variables({"a": "$${MISSING}"}, {}) == {"a": "${MISSING}"}


def test_values_are_not_substituted_twice():
    assert substitute_variables({"a": "${X}"}, {"X": "${Y}", "Y": "no"}) == {"a": "${Y}"}


def test_lone_dollar_signs_are_untouched():
    doc = {"a": "$5 and $HOME and {X} and }", "b": "price $"}
    assert substitute_variables(doc, {"HOME": "/root"}) == doc


def test_missing_variable_names_variable_and_field():
    doc = {"config": {"participants": [{"x": 1}, {"api_key": "Bearer ${SECRET_TOKEN}"}]}}
    with pytest.raises(MissingVariable) as info:
        substitute_variables(doc, {"OTHER": "x"})
    assert info.value.name == "SECRET_TOKEN"
    assert info.value.field == "config.participants[1].api_key"
    assert "SECRET_TOKEN" in str(info.value)


def test_keys_are_not_substituted():
    assert substitute_variables({"${X}": "v"}, {"X": "k"}) == {"${X}": "v"}


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_values = st.text(max_size=20)


@HYPO
@given(
    name=_names,
    value=_values,
    prefix=st.text(alphabet="ab /:", max_size=5),
    suffix=st.text(alphabet="ab /:", max_size=5),
)
def test_placeholder_is_replaced_by_the_exact_value(name, value, prefix, suffix):
    doc = {"config": {"v": f"{prefix}${{{name}}}{suffix}"}}
    assert substitute_variables(doc, {name: value}) == {"config": {"v": prefix + value + suffix}}
    assert find_variables(doc) == [("config.v", name)]


@HYPO
@given(name=_names, value=_values, default=st.text(alphabet=st.characters(blacklist_characters="}"), max_size=10))
def test_default_and_escape_properties(name, value, default):
    with_default = {"v": f"${{{name}:-{default}}}"}
    assert substitute_variables(with_default, {}) == {"v": default}
    assert substitute_variables(with_default, {name: value}) == {"v": value}
    assert find_variables(with_default) == []
    escaped = {"v": f"$${{{name}}}"}
    assert substitute_variables(escaped, {name: value}) == {"v": f"${{{name}}}"}
    assert find_variables(escaped) == []


@HYPO
@given(text=st.text(alphabet=st.characters(blacklist_characters="$"), max_size=30))
def test_text_without_dollar_is_unchanged(text):
    assert substitute_variables({"a": [text]}, {}) == {"a": [text]}
    assert find_variables({"a": [text]}) == []


def test_redact_scrubs_secrets_and_the_fragments_servers_quote() -> None:
    from shared.core.refs import redact, secret_values

    key = "sk-live-0123456789abcdefghijklmnop"
    spec = {"config": {"api_key": "${KEY}", "org": "${ORG_TOKEN:-default-org}", "plain": "not a secret"}}
    secrets = secret_values(spec, {"KEY": key, "ORG_TOKEN": "acme-org-token"})
    assert secrets == [key, "acme-org-token"]
    text = f"bad header {key!r}; input_value=['{key[:14]}...{key[-10:]}'] for acme-org-token"
    scrubbed = redact(text, secrets)
    assert key[:8] not in scrubbed and key[-8:] not in scrubbed and "acme-org-token" not in scrubbed
    assert scrubbed.startswith("bad header '***'") and redact("not a secret", secrets) == "not a secret"


def test_only_secrets_are_scrubbed_not_what_the_model_may_see_and_repeat() -> None:
    """A model's answer is kept as AutoGen gives it: a `${VAR}` that is no secret (a company in a
    system message, a model's name, a base URL) and a placeholder key ("EMPTY", "ollama") stay in
    it; a key, a credential header, a secret-named variable and a URL's password do not."""
    from shared.core.refs import redact, secret_values

    env = {
        "COMPANY": "Contoso Limited",
        "AUTHOR_NAME": "Jonathan Appleseed",
        "MODEL": "llama3.2:latest",
        "BASE": "http://localhost:11434/v1",
        "LOCAL_KEY": "EMPTY",
        "HF_TOKEN": "hf_abcdefghijklmnop",
        "BEARER": "bearer-value-123456",
        "PW": "pass-word-98765",
    }
    spec = {
        "config": {
            "system_message": "You work for ${COMPANY} with ${AUTHOR_NAME}; say ${HF_TOKEN} never.",
            "model_client": {
                "config": {
                    "model": "${MODEL}",
                    "base_url": "${BASE}",
                    "api_key": "${LOCAL_KEY}",
                    "default_headers": {"Authorization": "Bearer ${BEARER}"},
                },
            },
            "db": "postgres://me:${PW}@db.example/x",
            "other": {"api_key": "ollama"},
        }
    }
    secrets = secret_values(spec, env)
    assert sorted(secrets) == sorted(["hf_abcdefghijklmnop", "bearer-value-123456", "pass-word-98765"])
    answer = "Contoso Limited runs llama3.2:7b on http://localhost:8000; the queue is EMPTY; ask ollama."
    answer += " Signed, Jonathan Appleseed."
    assert redact(answer, secrets) == answer
    assert redact("hf_abcdefghijklmnop bearer-value-123456 pass-word-98765", secrets) == "*** *** ***"


def test_a_secret_written_out_in_the_file_is_scrubbed_as_a_resolved_one_is() -> None:
    from shared.core.refs import redact, secret_values

    literal = "sk-written-in-the-file-0123456789"
    spec = {"config": {"api_key": literal, "password": "${PW}", "model": "gpt-4o-mini"}}
    secrets = secret_values(spec, {"PW": "hunter2-hunter2"})
    assert literal in secrets and "hunter2-hunter2" in secrets and "gpt-4o-mini" not in secrets
    assert "${PW}" not in secrets  # a placeholder is no secret
    assert redact(f"answered 401: bad key Bearer {literal}", secrets) == "answered 401: bad key Bearer ***"


def test_a_json_schema_ref_inside_a_structured_output_is_not_a_component_reference() -> None:
    """AutoGen exports an agent's structured output as JSON Schema, whose nested models are
    `{"$ref": "#/$defs/Item"}`: kept as written, beside the keys JSON Schema allows there."""
    from shared.core.refs import find_refs, inline_refs

    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "first": {"$ref": "#/$defs/Item", "description": "the first"},
        },
    }
    doc = {"model_client": {"$ref": "m"}, "structured_message_factory": {"config": {"json_schema": schema}}}
    refs, problems = find_refs(doc)
    assert refs == [("model_client", "m")] and problems == []
    inlined = inline_refs(doc, lambda label: {"label": label})
    assert inlined["model_client"] == {"label": "m"}
    assert inlined["structured_message_factory"]["config"]["json_schema"] == schema


def test_a_field_path_of_a_resolved_spec_is_found_in_the_file_that_wrote_it() -> None:
    from shared.core.refs import file_at

    files = {"": "teams/t.yaml", "config.participants[1]": "agents/a.yaml", "config.participants[10]": "agents/b.yaml"}
    files["config.participants[1].config.model_client"] = "models/m.yaml"
    assert file_at(files, "") == ("teams/t.yaml", "")
    assert file_at(files, "config.participants[1]") == ("agents/a.yaml", "")
    assert file_at(files, "config.participants[1].config.model_client") == ("models/m.yaml", "")
    assert file_at(files, "config.participants[1].config.tools[0]") == ("agents/a.yaml", "config.tools[0]")
    assert file_at(files, "config.participants[10].config.x") == ("agents/b.yaml", "config.x")
    assert file_at(files, "config.participants[0]") == ("teams/t.yaml", "config.participants[0]")


def test_a_secret_a_server_quotes_escaped_is_scrubbed_too() -> None:
    """A password with a quote, a backslash or an accent, as a server's error echoes the request
    body (JSON, or JSON inside JSON) or its URL: no form of it survives."""
    import json
    import urllib.parse

    from shared.core.refs import redact

    secret = 'sk-Q"UOTE\\SECRET\u00e9-0123'
    once = json.dumps({"api_key": secret})
    for echoed in (once, json.dumps(once), json.dumps({"k": secret}, ensure_ascii=False), urllib.parse.quote(secret)):
        scrubbed = redact(f"bad body near: {echoed}", [secret])
        assert "SECRET" not in scrubbed and "UOTE" not in scrubbed, scrubbed


def test_a_secret_an_html_error_page_echoes_escaped_is_scrubbed_too() -> None:
    """An error page quoting the request body HTML-escapes it: `&amp;` and `&lt;` broke every run of
    8 characters of a key like `Pa55&w0rd<Secr3t>"Zq9`, and it was shown whole."""
    import html
    import json

    from shared.core.refs import redact

    secret = 'Pa55&w0rd<Secr3t>"Zq9'
    body = json.dumps({"api_key": secret})
    for page in (html.escape(body), html.escape(body, quote=False), html.escape(body).replace("&quot;", "&#34;")):
        scrubbed = redact(f"<title>{page}</title>", [secret])
        assert "Secr3t" not in scrubbed and "w0rd" not in scrubbed, scrubbed


def test_a_value_is_shown_as_resolved_unless_a_variable_in_it_is_a_secret() -> None:
    """A model's name in metrics and errors: `${LOCAL_LLM_MODEL:-llama3.2}` said nothing useful, and
    a name built from a secret must still never be shown."""
    from shared.core.refs import shown

    assert shown("${LOCAL_LLM_MODEL:-llama3.2}", "llama3.2") == "llama3.2"
    assert shown("gpt-4o", "gpt-4o") == "gpt-4o"
    assert shown("${MODEL_TOKEN}", "tok-123456789") == "${MODEL_TOKEN}"
    assert shown("${FAMILY}-${OPENAI_API_KEY}", "x-sk-123456789") == "${FAMILY}-${OPENAI_API_KEY}"
