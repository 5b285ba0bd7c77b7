"""The stand-in provider's schema translation: a hand-written jsii fragment -> Terraform schema."""

from __future__ import annotations

from scripts.terraform_standin.schema_from_jsii import Translator

MOD = "p.thing"
FILE = {"filename": "src/thing/index.ts"}
RESOLVABLE = {"fqn": "cdktf.IResolvable"}
STRING = {"primitive": "string"}


def _prop(name: str, type_: dict, optional: bool = False, anchor: str = "") -> dict:
    prop = {"name": name, "type": type_}
    if optional:
        prop["optional"] = True
    if anchor:
        prop["docs"] = {"remarks": f"Docs: {{@link https://example.test/docs/thing#{anchor} Thing#{anchor}}}"}
    return prop


def _or_resolvable(t: dict) -> dict:
    return {"union": {"types": [RESOLVABLE, t]}}


def _array(fqn: str) -> dict:
    return {"collection": {"kind": "array", "elementtype": {"fqn": fqn}}}


def _list_class(name: str, element: str) -> dict:
    return {
        "kind": "class",
        "name": name,
        "base": "cdktf.ComplexList",
        "locationInModule": FILE,
        "methods": [{"name": "get", "returns": {"type": {"fqn": f"{MOD}.{element}"}}}],
    }


def _ref_class(name: str, properties: list[dict]) -> dict:
    return {
        "kind": "class",
        "name": name,
        "base": "cdktf.ComplexObject",
        "locationInModule": FILE,
        "properties": properties,
    }


TYPES = {
    f"{MOD}.Thing": {
        "kind": "class",
        "name": "Thing",
        "base": "cdktf.TerraformResource",
        "locationInModule": FILE,
        "docs": {"summary": "Represents a {@link https://example.test/docs/resources/thing x_thing}."},
        "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{MOD}.ThingConfig"}}]},
        "properties": [
            _prop("tfResourceType", STRING) | {"static": True},
            _prop("id", STRING),
            _prop("name", STRING),
            _prop("nameInput", STRING, optional=True),
            _prop("selfLink", STRING),
            _prop("outputBase64Sha256", STRING),
            _prop("tags", {"collection": {"kind": "array", "elementtype": STRING}}),
            _prop("labels", {"fqn": "cdktf.StringMap"}),
            _prop("status", {"fqn": f"{MOD}.ThingStatusList"}),
            _prop("settings", {"fqn": f"{MOD}.ThingSettingsOutputReference"}),
            _prop("rule", {"fqn": f"{MOD}.ThingRuleList"}),
        ],
    },
    f"{MOD}.ThingConfig": {
        "kind": "interface",
        "datatype": True,
        "name": "ThingConfig",
        "interfaces": ["cdktf.TerraformMetaArguments"],
        "properties": [
            _prop("name", STRING, anchor="name"),
            _prop("id", STRING, optional=True, anchor="id"),
            _prop("tags", {"collection": {"kind": "array", "elementtype": STRING}}, optional=True, anchor="tags"),
            _prop("settings", {"fqn": f"{MOD}.ThingSettings"}, optional=True, anchor="settings"),
            _prop("rule", _or_resolvable(_array(f"{MOD}.ThingRule")), anchor="rule"),
        ],
    },
    f"{MOD}.ThingSettings": {
        "kind": "interface",
        "datatype": True,
        "name": "ThingSettings",
        "properties": [_prop("enabled", _or_resolvable({"primitive": "boolean"}), optional=True)],
    },
    f"{MOD}.ThingRule": {
        "kind": "interface",
        "datatype": True,
        "name": "ThingRule",
        "properties": [_prop("maxAge", {"primitive": "number"})],
    },
    f"{MOD}.ThingStatusList": _list_class("ThingStatusList", "ThingStatusOutputReference"),
    f"{MOD}.ThingRuleList": _list_class("ThingRuleList", "ThingRuleOutputReference"),
    f"{MOD}.ThingStatusOutputReference": _ref_class(
        "ThingStatusOutputReference", [_prop("state", STRING), _prop("ready", RESOLVABLE)]
    ),
    f"{MOD}.ThingSettingsOutputReference": _ref_class(
        "ThingSettingsOutputReference",
        [
            _prop("enabled", _or_resolvable({"primitive": "boolean"})),
            _prop("enabledInput", _or_resolvable({"primitive": "boolean"}), optional=True),
            _prop("uri", STRING),
            _prop("internalValue", {"fqn": f"{MOD}.ThingSettings"}, optional=True),
        ],
    ),
    f"{MOD}.ThingRuleOutputReference": _ref_class(
        "ThingRuleOutputReference", [_prop("maxAge", {"primitive": "number"}), _prop("maxAgeInput", STRING)]
    ),
}

JS = """
class ThingStatusOutputReference extends cdktf.ComplexObject {
    get state() {
        return this.getStringAttribute('state');
    }
    get ready() {
        return this.getBooleanAttribute('ready');
    }
}
class ThingSettingsOutputReference extends cdktf.ComplexObject {
    get enabled() {
        return this.getBooleanAttribute('enabled');
    }
    get uri() {
        return this.getStringAttribute('uri');
    }
}
class ThingRuleOutputReference extends cdktf.ComplexObject {
    get maxAge() {
        return this.getNumberAttribute('max_age');
    }
}
class Thing extends cdktf.TerraformResource {
    constructor(scope, id, config) {
        super(scope, id, {});
        this._labels = new cdktf.StringMap(this, "labels");
        this._status = new ThingStatusList(this, "status", false);
        this._settings = new ThingSettingsOutputReference(this, "settings");
        this._rule = new ThingRuleList(this, "rule", true);
    }
    get id() {
        return this.getStringAttribute('id');
    }
    get selfLink() {
        return this.getStringAttribute('self_link');
    }
    get outputBase64Sha256() {
        return this.getStringAttribute('output_base64sha256');
    }
    get tags() {
        return cdktf.Fn.tolist(this.getListAttribute('tags'));
    }
}
"""

OPTIONAL = {"optional": True, "computed": True}

EXPECTED = {
    "version": 0,
    "block": {
        "attributes": {
            "name": {"type": "string", "required": True},
            "id": {"type": "string", **OPTIONAL},
            "tags": {"type": ["set", "string"], **OPTIONAL},
            "self_link": {"type": "string", "computed": True},
            # Not naive snake case (output_base64_sha256): the name is the one the JS reads.
            "output_base64sha256": {"type": "string", "computed": True},
            "labels": {"type": ["map", "string"], "computed": True},
            "status": {
                "type": ["list", ["object", {"state": "string", "ready": "bool"}]],
                "computed": True,
            },
        },
        "block_types": {
            # A lone struct: a block of at most one, list nesting as SDKv2 declares it.
            "settings": {
                "nesting_mode": "list",
                "max_items": 1,
                "block": {
                    "attributes": {"enabled": {"type": "bool", **OPTIONAL}, "uri": {"type": "string", "computed": True}},
                    "block_types": {},
                },
            },
            # A required array of structs that the JS reads as a set.
            "rule": {
                "nesting_mode": "set",
                "min_items": 1,
                "block": {"attributes": {"max_age": {"type": "number", "required": True}}, "block_types": {}},
            },
        },
    },
}


def test_jsii_fragment_translates_to_terraform_schema():
    schema = Translator({"types": TYPES}, {"src/thing/index.ts": JS}).translate()
    assert schema["data_source_schemas"] == {}
    assert schema["resource_schemas"] == {"x_thing": EXPECTED}
