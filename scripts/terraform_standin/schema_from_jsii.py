"""Translate a CDKTF prebuilt provider package into a Terraform provider schema.

The prebuilt CDKTF provider packages on PyPI (cdktf-cdktf-provider-google, ...-archive)
are generated from `terraform providers schema -json` of one provider version. Their
jsii assembly (the wheel's `_jsii/*.jsii.tgz`, file `package/.jsii`) keeps that schema
in typed form:

- each resource, data source and the provider is a class (base cdktf.TerraformResource,
  cdktf.TerraformDataSource, cdktf.TerraformProvider); its Terraform name is the text of
  the `{@link ... name}` in the class summary;
- the class's `config` struct lists the arguments: `optional` or not, a primitive or a
  collection of primitives (an attribute), or a struct / array of structs (a nested
  block; a lone struct is a block of at most one item, an array one of many);
- the class's own properties are every attribute it reads back; one that is not an
  argument is computed-only (a ComplexList of objects is a computed list of objects);
- a nested block's struct lists its arguments, its OutputReference class its attributes.

jsii names are camelCase. The Terraform names, and whether a collection is a set, come
from the JavaScript of the same package (`lib/<name>/*.js`), which reads every
attribute by its Terraform name: `get fooBar() { return this.getStringAttribute('foo_bar'); }`,
`cdktf.Fn.tolist(...)` around a set, `new FooList(this, "foo", true)` for a set of blocks.

What the assembly does not carry, and so the schema does not have: which optional
arguments are also computed (all are marked optional+computed: an unset one plans as
unknown, which is what the provider does for most of them), `sensitive`, defaults,
conflicts_with / exactly_one_of, and value validation. A block of at most one item is
given list nesting with max_items 1, as SDKv2 providers (google, archive) declare it.

The output is the `provider_schemas` entry of `terraform providers schema -json`:
{"provider": {"block": ...}, "resource_schemas": {...}, "data_source_schemas": {...}}.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

_ROOT_BASES = {
    "cdktf.TerraformResource": "resource_schemas",
    "cdktf.TerraformDataSource": "data_source_schemas",
    "cdktf.TerraformProvider": "provider",
}
# Computed collection classes of cdktf itself, by fqn.
_CDKTF_TYPES = {
    "cdktf.StringMap": ["map", "string"],
    "cdktf.NumberMap": ["map", "number"],
    "cdktf.BooleanMap": ["map", "bool"],
    "cdktf.AnyMap": ["map", "dynamic"],
    "cdktf.StringMapList": ["list", ["map", "string"]],
    "cdktf.NumberMapList": ["list", ["map", "number"]],
    "cdktf.BooleanMapList": ["list", ["map", "bool"]],
    "cdktf.AnyMapList": ["list", ["map", "dynamic"]],
    "cdktf.StringListList": ["list", ["list", "string"]],
    "cdktf.NumberListList": ["list", ["list", "number"]],
    "cdktf.BooleanList": ["list", "bool"],
}
_PRIMITIVES = {"string": "string", "number": "number", "boolean": "bool", "any": "dynamic", "date": "string"}

_LINK = re.compile(r"\{@link \S+ ([A-Za-z0-9_]+)\}")
_ANCHOR = re.compile(r"\{@link \S+#([A-Za-z0-9_]+) ")
_CLASS = re.compile(r"^class (\w+) extends ", re.M)
_GETTER = re.compile(r"get (\w+)\(\) \{\s*return ([^;]*);")
_ATTRIBUTE_READ = re.compile(r"this\.(get\w*Attribute|interpolationForAttribute)\('([^']+)'\)")
# What a getter typed only `cdktf.IResolvable` reads, by the cdktf method it calls.
_READ_TYPES = {
    "getBooleanAttribute": "bool",
    "getStringAttribute": "string",
    "getNumberAttribute": "number",
    "getListAttribute": ["list", "string"],
    "getNumberListAttribute": ["list", "number"],
    "getStringMapAttribute": ["map", "string"],
    "getNumberMapAttribute": ["map", "number"],
    "getBooleanMapAttribute": ["map", "bool"],
    "getAnyMapAttribute": ["map", "dynamic"],
    "interpolationForAttribute": "dynamic",
}
# synthesizeAttributes(): `foo_bar: cdktf.stringToTerraform(this._fooBar),`
_SYNTH = re.compile(r"^\s*(\w+): [\w.]+\(this\._(\w+)\b", re.M)
_FIELD = re.compile(r"^this\._(\w+)$")
_COMPLEX = re.compile(r"this\._(\w+) = new [\w.]+\(this, \"([^\"]+)\"(?:, (true|false))?\)")


class JsNames:
    """Terraform names and set-ness of a class's properties, read from the package's JS."""

    def __init__(self, source: str):
        # class name -> {camel: (terraform name, is a set)}
        self.classes: dict[str, dict[str, tuple[str, bool]]] = {}
        # (class name, camel) -> the cdktf method its getter reads the attribute with
        self.reads: dict[tuple[str, str], str] = {}
        starts = [(m.start(), m.group(1)) for m in _CLASS.finditer(source)]
        for i, (start, name) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(source)
            body = source[start:end]
            names: dict[str, tuple[str, bool]] = {}
            for m in _GETTER.finditer(body):
                read = _ATTRIBUTE_READ.search(m.group(2))
                if read:
                    names[m.group(1)] = (read.group(2), "Fn.tolist(" in m.group(2))
                    self.reads[(name, m.group(1))] = read.group(1)
            for m in _COMPLEX.finditer(body):
                names[m.group(1)] = (m.group(2), m.group(3) == "true")
            for m in _SYNTH.finditer(body):
                names.setdefault(m.group(2), (m.group(1), False))
            for m in _GETTER.finditer(body):  # `get buildAttribute() { return this._build; }`
                field = _FIELD.match(m.group(2).strip())
                if field and field.group(1) in names:
                    names.setdefault(m.group(1), names[field.group(1)])
            self.classes[name] = names

    def lookup(self, class_name: str | None, camel: str) -> tuple[str, bool] | None:
        return self.classes.get(class_name or "", {}).get(camel)


def snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


class Translator:
    def __init__(self, assembly: dict, js_sources: dict[str, str]):
        self.types: dict = assembly["types"]
        self.js_sources = js_sources  # "src/foo/index.ts" -> JS text of lib/foo/index.js
        self._js: dict[str, JsNames] = {}

    # --- helpers -----------------------------------------------------------------
    def js(self, jtype: dict) -> JsNames:
        filename = jtype.get("locationInModule", {}).get("filename", "")
        if filename not in self._js:
            self._js[filename] = JsNames(self.js_sources.get(filename, ""))
        return self._js[filename]

    @staticmethod
    def _unwrap(t: dict) -> dict:
        """The one type of a union other than cdktf.IResolvable."""
        if "union" in t:
            rest = [u for u in t["union"]["types"] if u.get("fqn") != "cdktf.IResolvable"]
            if len(rest) != 1:
                raise ValueError(f"union of {rest}")
            return rest[0]
        return t

    def _name(self, owner: dict | None, prop: dict) -> tuple[str, bool]:
        """(Terraform name, is a set) of a property, from its owner class's JS, else docs."""
        if owner is not None:
            found = self.js(owner).lookup(owner["name"], prop["name"])
            if found:
                return found
        anchor = _ANCHOR.search(prop.get("docs", {}).get("remarks", ""))
        return (anchor.group(1) if anchor else snake(prop["name"])), False

    @staticmethod
    def _own_properties(jtype: dict) -> list[dict]:
        return [p for p in jtype.get("properties", []) if not p.get("static")]

    def _outputs(self, jtype: dict | None) -> dict[str, dict]:
        """A class's attributes by camel name (no *Input twins, no internalValue)."""
        if jtype is None:
            return {}
        props = {p["name"]: p for p in self._own_properties(jtype)}
        return {
            name: p
            for name, p in props.items()
            if name != "internalValue" and not (name.endswith("Input") and name[:-5] in props)
        }

    def _element_class(self, list_class: dict) -> dict | None:
        """The OutputReference class a ComplexList/ComplexMap hands out from get()."""
        for method in list_class.get("methods", []):
            if method["name"] == "get" and "returns" in method:
                return self.types.get(method["returns"]["type"].get("fqn", ""))
        return None

    # --- types ---------------------------------------------------------------------
    def prop_type(self, owner: dict | None, prop: dict, is_set: bool):
        """cty type of a property; a bare cdktf.IResolvable is typed by what its getter reads."""
        if prop["type"].get("fqn") == "cdktf.IResolvable":
            read = self.js(owner).reads.get((owner["name"], prop["name"])) if owner else None
            if read is None:
                raise ValueError(f"no Terraform type for {prop['name']}: IResolvable with no getter")
            t = _READ_TYPES[read]
            return ["set", t[1]] if is_set and isinstance(t, list) and t[0] == "list" else t
        return self.value_type(prop["type"], is_set)

    def value_type(self, t: dict, is_set: bool = False):
        """cty type (JSON form) of an attribute's jsii type."""
        t = self._unwrap(t)
        if "primitive" in t:
            return _PRIMITIVES[t["primitive"]]
        if "collection" in t:
            kind = t["collection"]["kind"]
            element = self.value_type(t["collection"]["elementtype"])
            if kind == "map":
                return ["map", element]
            return ["set" if is_set else "list", element]
        fqn = t["fqn"]
        if fqn in _CDKTF_TYPES:
            return _CDKTF_TYPES[fqn]
        jtype = self.types[fqn]
        base = jtype.get("base")
        if base in ("cdktf.ComplexList", "cdktf.ComplexMap"):
            obj = self.object_type(self._element_class(jtype))
            return ["map" if base == "cdktf.ComplexMap" else ("set" if is_set else "list"), obj]
        if base == "cdktf.ComplexObject":
            return ["list", self.object_type(jtype)]
        if jtype.get("datatype"):  # a struct read back as a value
            return ["list", self.object_type(None, jtype)]
        raise ValueError(f"no Terraform type for {fqn}")

    def object_type(self, ref_class: dict | None, struct: dict | None = None):
        attrs = {}
        owner = ref_class
        props = self._outputs(ref_class) if ref_class else {p["name"]: p for p in struct.get("properties", [])}
        for prop in props.values():
            name, is_set = self._name(owner, prop)
            attrs[name] = self.prop_type(owner, prop, is_set)
        return ["object", attrs]

    # --- blocks --------------------------------------------------------------------
    def _is_block(self, t: dict) -> bool:
        t = self._unwrap(t)
        if "collection" in t:
            t = t["collection"]["elementtype"]
        fqn = t.get("fqn")
        return bool(fqn) and bool(self.types.get(fqn, {}).get("datatype"))

    def block(self, struct: dict, ref_class: dict | None, inherited: set[str] = frozenset()) -> dict:
        """Schema block of a config struct and the class that reads its attributes back."""
        attributes: dict[str, dict] = {}
        block_types: dict[str, dict] = {}
        outputs = self._outputs(ref_class)
        for prop in struct.get("properties", []):
            camel = prop["name"]
            name, is_set = self._name(ref_class, prop)
            jt = self._unwrap(prop["type"])
            if self._is_block(jt):
                many = "collection" in jt
                element = jt["collection"]["elementtype"] if many else jt
                inner_struct = self.types[element["fqn"]]
                inner_ref = None
                if camel in outputs:
                    ref = self.types.get(self._unwrap(outputs[camel]["type"]).get("fqn", ""))
                    if ref is not None and ref.get("base") in ("cdktf.ComplexList", "cdktf.ComplexMap"):
                        ref = self._element_class(ref)
                    inner_ref = ref
                nested = {
                    "nesting_mode": "set" if (many and is_set) else "list",
                    "block": self.block(inner_struct, inner_ref),
                }
                if not prop.get("optional"):
                    nested["min_items"] = 1
                if not many:
                    nested["max_items"] = 1
                block_types[name] = nested
            else:
                attr = {"type": self.value_type(jt, is_set)}
                if prop.get("optional"):
                    attr["optional"] = True
                    attr["computed"] = True
                else:
                    attr["required"] = True
                attributes[name] = attr
        inputs = {p["name"] for p in struct.get("properties", [])}
        for camel, prop in outputs.items():
            if camel in inputs or camel in inherited:
                continue
            name, is_set = self._name(ref_class, prop)
            if name in attributes or name in block_types:
                continue
            attributes[name] = {"type": self.prop_type(ref_class, prop, is_set), "computed": True}
        return {"attributes": attributes, "block_types": block_types}

    def root(self, jclass: dict) -> dict:
        config_fqn = next(p["type"]["fqn"] for p in jclass["initializer"]["parameters"] if p["name"] == "config")
        return {"version": 0, "block": self.block(self.types[config_fqn], jclass)}

    def translate(self) -> dict:
        out: dict = {"provider": None, "resource_schemas": {}, "data_source_schemas": {}}
        for jtype in self.types.values():
            section = _ROOT_BASES.get(jtype.get("base", ""))
            if jtype.get("kind") != "class" or section is None:
                continue
            schema = self.root(jtype)
            if section == "provider":
                # `alias` is a meta-argument of every provider block, not the provider's own.
                schema["block"]["attributes"].pop("alias", None)
                out["provider"] = schema
                continue
            name = _LINK.search(jtype["docs"]["summary"]).group(1)
            out[section][name] = schema
        return out


def read_package(wheel: Path) -> tuple[dict, dict[str, str]]:
    """The jsii assembly and its JS sources ("src/x/index.ts" -> text) from a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".jsii.tgz"))
        data = zf.read(member)
    assembly = None
    sources: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for info in tar:
            if info.name == "package/.jsii":
                assembly = json.load(tar.extractfile(info))
            elif info.name.startswith("package/lib/") and info.name.endswith(".js"):
                rel = info.name[len("package/lib/") : -len(".js")]
                sources[f"src/{rel}.ts"] = tar.extractfile(info).read().decode()
    if assembly is None:
        raise SystemExit(f"{wheel}: no package/.jsii")
    return assembly, sources


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="writes <provider>.json here, e.g. google.json")
    parser.add_argument("wheels", type=Path, nargs="+", help="cdktf-cdktf-provider-* wheels")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for wheel in args.wheels:
        assembly, sources = read_package(wheel)
        schema = Translator(assembly, sources).translate()
        # "@cdktf/provider-google" -> google.json
        output = args.out_dir / f"{assembly['name'].rsplit('provider-', 1)[-1]}.json"
        output.write_text(json.dumps(schema, sort_keys=True))
        print(
            f"{output}: {len(schema['resource_schemas'])} resources, "
            f"{len(schema['data_source_schemas'])} data sources, from {assembly['name']} {assembly['version']}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
