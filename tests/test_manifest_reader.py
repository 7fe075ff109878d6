"""The fast manifest reader gives exactly what PyYAML's safe loader gives, and reads JSON dumps as JSON.

monitor/manifests.py builds plain YAML values itself (libyaml parses; str/int/bool/null, mappings and
sequences are built directly) and leaves every other tag and every error to PyYAML. These documents cover
each way out of the direct path.
"""

from __future__ import annotations

import json

import pytest
import yaml

from monitor.errors import InputError
from monitor.manifests import _load_yaml, iter_documents, load_manifests

DOCUMENTS = [
    "a: [1, 2, {b: yes, c: ~, d: 0x1f, e: 010, f: 1.5, g: 2001-12-14, h: 1_000, i: 0, j: -3, k: +4}]",
    "x: &a {k: v}\ny: *a\nz:\n  <<: *a\n  m: 1\n",
    "- null\n- Null\n- ''\n- NO\n- on\n- 'true'\n- True\n- FALSE\n- .inf\n- 190:20:30\n",
    "a: !!binary aGVsbG8=\nb: !!str 80\nc: !!int '7'\n",
    "1: one\n2.5: two\nnull: three\n",
    "---\nkind: A\n---\n---\nkind: B\n...\n",
    "seq: &s [1, 2]\nagain: *s\n",
    '{"kind": "List", "items": [{"kind": "Pod"}]}',  # JSON as YAML: a flow mapping
    "{kind: Pod, metadata: {name: p}}",  # a flow mapping that is not JSON
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_yaml_values_equal_pyyaml_safe_load(tmp_path, text):
    assert list(_load_yaml(text)) == list(yaml.load_all(text, Loader=yaml.SafeLoader))
    path = tmp_path / "m.yaml"
    path.write_text(text)
    if all(isinstance(d, dict | None) for d in yaml.load_all(text, Loader=yaml.SafeLoader)):
        # Through the file reader too (the JSON document takes the JSON path there).
        flat = [d for d in yaml.load_all(text, Loader=yaml.SafeLoader) if d is not None]
        flat = [i for d in flat for i in (d["items"] if d.get("kind") == "List" else [d])]
        assert list(iter_documents(path)) == flat


def test_aliases_stay_one_object_like_pyyaml():
    (doc,) = _load_yaml("seq: &s [1, 2]\nagain: *s\n")
    assert doc["seq"] is doc["again"]


def test_unhashable_key_is_pyyamls_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("? [a]\n: b\n")
    with pytest.raises(InputError) as e:
        load_manifests(tmp_path)
    assert "bad.yaml" in str(e.value) and "unhashable key" in str(e.value)


def test_kubectl_json_dump_in_a_yaml_file_is_read_as_json(tmp_path):
    dump = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop",
                                                          "labels": {"app": "web"}},
         "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
         "status": {"podIP": "10.0.0.5"}}]}
    (tmp_path / "dump.yaml").write_text(json.dumps(dump, indent=2))
    (tmp_path / "same.json").write_text(json.dumps(dump))
    a = load_manifests(tmp_path / "dump.yaml")
    b = load_manifests(tmp_path / "same.json")
    assert a.pods == b.pods and a.namespaces == b.namespaces
    assert [p.ref for p in a.pods] == ["shop/web"] and a.pods[0].ports[0].port == 8080


def test_broken_json_in_a_yaml_file_gets_the_yaml_readers_position(tmp_path):
    (tmp_path / "dump.yaml").write_text('{"kind": "Pod",\n  "metadata": {"name": "p"\n')
    with pytest.raises(InputError) as e:
        load_manifests(tmp_path)
    assert "dump.yaml" in str(e.value) and "line" in str(e.value)
