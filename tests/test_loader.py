"""shared.core.loader.parse_document: bytes of one file -> one document, or an error naming the file."""

from __future__ import annotations

import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.errors import ConfigError
from shared.core.loader import parse_document


def error(path: str, data: bytes) -> ConfigError:
    result = parse_document(path, data)
    assert isinstance(result, ConfigError), f"expected an error, got {result!r}"
    assert result.path == path
    assert path in str(result)
    return result


# --- well-formed files ----------------------------------------------------------------------------


def test_yaml_mapping_is_returned_as_a_dict():
    doc = parse_document("models/m.yaml", b"provider: p\nlabel: m\nconfig:\n  model: x\n  n: 3\n")
    assert doc == {"provider": "p", "label": "m", "config": {"model": "x", "n": 3}}


def test_json_mapping_is_returned_as_a_dict():
    doc = parse_document("models/m.json", b'{"label": "m", "config": {"list": [1, 2.5, null, true]}}')
    assert doc == {"label": "m", "config": {"list": [1, 2.5, None, True]}}


def test_yml_suffix_is_parsed_as_yaml():
    assert parse_document("a.yml", b"a: 1\n") == {"a": 1}


def test_yaml_with_explicit_start_and_end_markers_is_one_document():
    assert parse_document("a.yaml", b"---\na: 1\n...\n") == {"a": 1}


def test_null_documents_around_the_component_do_not_count():
    assert parse_document("a.yaml", b"---\n---\na: 1\n") == {"a": 1}


def test_utf8_bom_and_non_ascii_text_in_yaml():
    assert parse_document("a.yaml", "\ufefflabel: café ✓\n".encode()) == {"label": "café ✓"}


# --- malformed files: the error names the file and the line ------------------------------------------


def test_malformed_yaml_names_file_and_line():
    err = error("agents/a.yaml", b"provider: p\nlabel: x\n  config: 3\n")
    assert "malformed YAML" in err.message
    assert "line 3" in err.message


def test_unclosed_yaml_flow_mapping_names_file_and_line():
    err = error("agents/a.yaml", b"provider: p\nlabel: x\nconfig: {a: 1\n")
    assert "malformed YAML" in err.message
    assert "line 4" in err.message


def test_malformed_json_names_file_line_and_column():
    err = error("models/m.json", b'{\n  "a": 1,\n  "b": ,\n  "c": 2\n}')
    assert "malformed JSON" in err.message
    assert "line 3" in err.message
    assert "column 8" in err.message


def test_json_trailing_comma_names_line():
    err = error("models/m.json", b'{\n  "a": 1,\n}')
    assert "line 3" in err.message


def test_json_file_is_not_parsed_as_yaml():
    # Valid YAML, but not valid JSON: a .json file must be JSON.
    err = error("models/m.json", b"a: 1\n")
    assert "malformed JSON" in err.message


def test_non_utf8_bytes_are_an_error_naming_the_file():
    err = error("agents/a.yaml", "label: café\n".encode("latin-1"))
    assert "UTF-8" in err.message
    assert "0xe9" in err.message
    assert "offset 10" in err.message


def test_non_utf8_json_is_an_error():
    err = error("m.json", b'{"a": "\xff"}')
    assert "UTF-8" in err.message


def test_empty_file_is_an_error():
    assert "empty" in error("a.yaml", b"").message
    assert "empty" in error("a.json", b"").message


def test_whitespace_only_file_is_an_error():
    assert "empty" in error("a.yaml", b"  \n\n\t\n").message


def test_comment_only_yaml_has_no_component():
    err = error("a.yaml", b"# nothing here\n")
    assert "found 0 documents" in err.message


def test_multi_document_yaml_is_an_error():
    err = error("a.yaml", b"a: 1\n---\nb: 2\n")
    assert "exactly one component" in err.message
    assert "found 2 documents" in err.message


def test_top_level_list_is_an_error():
    assert "found list" in error("a.yaml", b"- a: 1\n- b: 2\n").message
    assert "found list" in error("a.json", b"[1, 2]").message


def test_top_level_scalar_is_an_error():
    assert "found str" in error("a.yaml", b"just text\n").message
    assert "found int" in error("a.json", b"42").message


def test_duplicate_yaml_key_is_an_error_naming_key_and_line():
    err = error("agents/a.yaml", b"label: a\nprovider: p\nlabel: b\n")
    assert "duplicate key 'label'" in err.message
    assert "line 3" in err.message


def test_duplicate_key_in_nested_yaml_mapping():
    err = error("a.yaml", b"a: 1\nconfig:\n  c: 1\n  d: 2\n  c: 3\n")
    assert "duplicate key 'c'" in err.message
    assert "line 5" in err.message


def test_duplicate_key_in_yaml_flow_mapping():
    err = error("a.yaml", b"config: {x: 1, x: 2}\n")
    assert "duplicate key 'x'" in err.message


def test_duplicate_json_key_is_an_error_as_in_yaml():
    assert "duplicate key 'c'" in error("a.json", b'{"a": 1, "b": {"c": 1, "c": 2}}').message
    assert parse_document("a.json", b'{"a": {"x": 1}, "b": {"x": 2}}') == {"a": {"x": 1}, "b": {"x": 2}}


def test_numbers_python_refuses_to_convert_are_errors_not_crashes():
    for path, data in (
        ("a.json", b'{"n": ' + b"9" * 5000 + b"}"),
        ("a.yaml", b"n: " + b"9" * 5000 + b"\n"),
        ("b.yaml", b"n: [0x" + b"f" * 5000 + b"]\n"),  # read, but too long to write as JSON
    ):
        assert "4,000 digits" in error(path, data).message
    assert error("b.yaml", b"n: [0x" + b"f" * 5000 + b"]\n").field == "n[0]"
    assert "line 2, column 5" in error("a.yaml", b"a: 1\nn: [" + b"9" * 5000 + b"]\n").message  # where it is written
    assert "abc" in error("c.yaml", b"n: !!int abc\n").message
    assert "abc" in error("d.yaml", b"n: !!float abc\n").message
    assert parse_document("e.yaml", b"n: 123456789012345678901234567890\n") == {"n": 123456789012345678901234567890}


def test_nan_and_infinity_are_errors_naming_the_field():
    for path, data in (
        ("a.yaml", b"config: {temperature: .nan}\n"),
        ("b.yaml", b"config: {temperature: -.inf}\n"),
        ("c.json", b'{"config": {"temperature": NaN}}'),
        ("d.json", b'{"config": {"temperature": Infinity}}'),
    ):
        err = error(path, data)
        assert err.field == "config.temperature" and "NaN and infinity" in err.message


def test_a_lone_surrogate_is_an_error_naming_the_field():
    """ "\\ud800" is a valid JSON string but no text: Studio stored it, then answered 500 to every
    listing of that user's gallery entries, and a sync crashed hashing it."""
    for path, data, field in (
        ("a.json", b'{"config": {"description": "lone \\ud800 here"}}', "config.description"),
        ("c.json", b'{"config": {"d\\udfff": 1}}', "config"),
    ):
        err = error(path, data)
        assert err.field == field and "lone surrogate" in err.message, (path, err)
    assert parse_document("d.json", '{"a": "caf\u00e9 \U0001f600"}'.encode()) == {"a": "caf\u00e9 \U0001f600"}


def test_a_utf8_byte_order_mark_is_read_past():
    assert parse_document("a.json", b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert parse_document("a.yaml", b"\xef\xbb\xbfa: 1\n") == {"a": 1}
    assert "offset 9" in error("b.json", b'\xef\xbb\xbf{"a": \xff}').message


def test_same_key_in_different_mappings_is_fine():
    assert parse_document("a.yaml", b"a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}


# --- YAML features that must still work, and values JSON cannot carry -------------------------------


def test_yaml_anchors_and_merge_keys_work():
    doc = parse_document("a.yaml", b"base: &b {k: 1, j: 2}\nx:\n  <<: *b\n  k: 3\n")
    assert doc == {"base": {"k": 1, "j": 2}, "x": {"k": 3, "j": 2}}


def test_duplicate_keys_next_to_a_merge_key_are_still_rejected():
    err = error("a.yaml", b"base: &b {k: 1}\nx:\n  <<: *b\n  z: 1\n  z: 2\n")
    assert "duplicate key 'z'" in err.message


def test_unquoted_dates_stay_as_the_text_written():
    doc = parse_document("a.yaml", b"a: 2024-01-01\nb: 2024-01-01 10:00:00\n")
    assert doc == {"a": "2024-01-01", "b": "2024-01-01 10:00:00"}
    json.dumps(doc)  # a document is always JSON


def test_non_string_key_is_an_error_naming_the_field():
    err = error("a.yaml", b"config:\n  opts: {1: x, b: y}\n")
    assert err.field == "config.opts"
    assert "not a string" in err.message


def test_unhashable_key_is_an_error_not_a_crash():
    err = error("a.yaml", b"? [a, b]\n: 1\nlabel: x\n")
    assert "unhashable" in err.message


def test_binary_value_is_an_error_naming_the_field():
    err = error("a.yaml", b"config:\n  blob: !!binary aGVsbG8=\n")
    assert err.field == "config.blob"


def test_recursive_alias_is_an_error_not_a_crash():
    err = error("a.yaml", b"a: &x [1, *x]\n")
    assert err.field == "a[1]"


def test_absurdly_deep_nesting_is_an_error_not_a_crash():
    depth = 100_000
    error("a.json", b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
    error("a.yaml", b"a: " + b"[" * depth + b"]" * depth)


# --- properties ---------------------------------------------------------------------------------


@settings()
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".yaml", ".yml", ".json"]))
def test_any_bytes_give_a_dict_or_an_error_naming_the_file(data, suffix):
    path = "dir/file" + suffix
    result = parse_document(path, data)
    if isinstance(result, ConfigError):
        assert result.path == path
        assert result.message
    else:
        assert isinstance(result, dict)
        json.dumps(result)


@settings()
@given(text=st.text(alphabet="ab:{}[]-,\"' \n#&*!?|>\t1.", max_size=80))
def test_any_yaml_like_text_gives_a_json_document_or_an_error(text):
    result = parse_document("f.yaml", text.encode())
    if isinstance(result, ConfigError):
        assert result.path == "f.yaml"
    else:
        assert isinstance(result, dict)
        assert json.loads(json.dumps(result)) == result


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=15,
)


@settings()
@given(doc=st.dictionaries(_text, _json, max_size=5))
def test_json_and_yaml_dumps_of_a_document_parse_back_to_it(doc):
    assert parse_document("f.json", json.dumps(doc).encode()) == doc
    assert parse_document("f.yaml", yaml.safe_dump(doc).encode()) == doc
