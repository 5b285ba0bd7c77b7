"""A schema-only stand-in for a Terraform provider: it validates and plans, never applies.

Terraform runs it in place of a real provider (hashicorp/google, hashicorp/archive) through
`dev_overrides` in a CLI configuration (see check.py), so that the real `terraform`
binary can `validate` and `plan` this project's configuration where the provider registry
cannot be reached. It answers Terraform's plugin protocol from a schema made by
schema_from_jsii.py:

- GetProviderSchema: the schema, so Terraform itself checks argument names, types,
  required arguments, blocks against attributes, block counts and every reference;
- PlanResourceChange: the configuration as planned, every computed attribute it leaves
  unset (at any depth) unknown, "known after apply";
- ReadDataSource: the configuration, every computed attribute a placeholder (Terraform
  refuses a data source result that is not wholly known); a data source whose
  configuration is not yet known is deferred by Terraform itself and never reaches here;
- ApplyResourceChange and ImportResourceState: an error. ReadResource hands back the
  state it got (plans here run with -refresh=false and no state anyway).

Library: `tf` (PyPI "tf", MIT; https://github.com/hfern/tf), pinned in requirements.txt.
Chosen over `pyvider` because its model is plain classes whose schema is a classmethod
returning data: a thousand resource types are made from a JSON file at start-up with
`type()`. pyvider registers components through decorators and attrs-typed config
classes in a global hub and runs an asyncio server with a logging framework
(provide-foundation), far more machinery to drive from data; both pin a protobuf major
the project venv does not have, so the stand-in has its own venv either way.
From `tf` this uses the go-plugin handshake, TLS and gRPC server (tf.runner), the
tfplugin6 stubs, schema-to-protobuf, the msgpack value codec, diagnostics and the
provider/validate/configure calls. Its resource planning only marks top-level computed
attributes unknown and calls create/update/delete for apply, and it has no list
nesting mode and no object type, so those parts are filled in here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import grpc
from tf import runner
from tf.gen import tfplugin_pb2 as pb
from tf.iface import DataSource, Provider, ReadDataContext, Resource
from tf.provider import ProviderServicer
from tf.schema import Attribute, Block, NestedBlock, NestMode, Schema
from tf.types import TfType, Unknown
from tf.utils import Diagnostics, read_dynamic_value, to_dynamic_value

_NESTING = {
    "list": pb.Schema.NestedBlock.NestingMode.LIST,
    "set": pb.Schema.NestedBlock.NestingMode.SET,
    "single": pb.Schema.NestedBlock.NestingMode.SINGLE,
    "map": pb.Schema.NestedBlock.NestingMode.MAP,
    "group": pb.Schema.NestedBlock.NestingMode.GROUP,
}


class CtyType(TfType):
    """Any cty type, given in its JSON form ("string", ["list", "string"], ["object", {...}])."""

    def __init__(self, cty: Any):
        self.cty = cty

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any) -> Any:
        return value

    def tf_type(self) -> bytes:
        return json.dumps(self.cty, separators=(",", ":")).encode()


class SchemaBlock(NestedBlock):
    """A nested block of any nesting mode (tf's own NestedBlock knows set and single only)."""

    def __init__(self, type_name: str, nesting: str, block: Block, min_items: int = 0, max_items: int = 0):
        super().__init__(type_name, NestMode.Set, block, min_items or None, max_items or None)
        self.nesting = nesting

    def to_pb(self) -> pb.Schema.NestedBlock:
        return pb.Schema.NestedBlock(
            type_name=self.type_name,
            block=self.block.to_pb(),
            nesting=_NESTING[self.nesting],
            min_items=self.min_items or 0,
            max_items=self.max_items or 0,
        )

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any) -> Any:
        return value

    def semantically_equal(self, a_decoded, b_decoded) -> bool:
        return a_decoded == b_decoded


def to_block(block: dict) -> Block:
    """A tf Block from the JSON form of `terraform providers schema -json`."""
    attributes = [
        Attribute(
            name,
            CtyType(a["type"]),
            required=a.get("required", False),
            optional=a.get("optional", False),
            computed=a.get("computed", False),
            sensitive=a.get("sensitive", False),
        )
        for name, a in sorted(block.get("attributes", {}).items())
    ]
    blocks = [
        SchemaBlock(name, b["nesting_mode"], to_block(b["block"]), b.get("min_items", 0), b.get("max_items", 0))
        for name, b in sorted(block.get("block_types", {}).items())
    ]
    return Block(attributes=attributes, block_types=blocks)


def to_schema(schema: dict) -> Schema:
    block = to_block(schema["block"])
    return Schema(version=schema.get("version", 0), attributes=block.attributes, block_types=block.block_types)


# --- values --------------------------------------------------------------------------


def placeholder(cty: Any, name: str) -> Any:
    """A known value of a cty type, for a data source's computed attribute."""
    if cty == "string":
        return f"stand-in-{name}"
    if cty == "number":
        return 0
    if cty == "bool":
        return False
    if cty == "dynamic":
        return None
    kind = cty[0]
    if kind in ("list", "set"):
        return []
    if kind == "map":
        return {}
    if kind == "object":
        return {k: placeholder(t, k) for k, t in cty[1].items()}
    return None


def fill_computed(block: dict, value: dict | None, known: bool) -> dict | None:
    """`value` (an object of `block`) with each unset computed attribute, at any depth,
    made unknown (known=False: a planned resource) or a placeholder (known=True: a data
    source's result)."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, attr in block.get("attributes", {}).items():
        if out.get(name) is None and attr.get("computed"):
            out[name] = placeholder(attr["type"], name) if known else Unknown
    for name, nested in block.get("block_types", {}).items():
        items = out.get(name)
        if isinstance(items, list):
            out[name] = [fill_computed(nested["block"], item, known) for item in items]
        elif isinstance(items, dict) and nested["nesting_mode"] == "map":
            out[name] = {k: fill_computed(nested["block"], v, known) for k, v in items.items()}
        elif isinstance(items, dict):
            out[name] = fill_computed(nested["block"], items, known)
    return out


# --- the provider ------------------------------------------------------------------


class StandinResource(Resource):
    """Schema only: planning and apply are the servicer's (see StandinServicer)."""

    type_name = ""
    schema: ClassVar[dict] = {}

    def __init__(self, provider: StandinProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.type_name

    @classmethod
    def get_schema(cls) -> Schema:
        return to_schema(cls.schema)

    def create(self, ctx, planned):
        raise NotImplementedError

    read = update = delete = create


class StandinDataSource(DataSource):
    type_name = ""
    schema: ClassVar[dict] = {}

    def __init__(self, provider: StandinProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.type_name

    @classmethod
    def get_schema(cls) -> Schema:
        return to_schema(cls.schema)

    def read(self, ctx: ReadDataContext, config: dict) -> dict:
        return fill_computed(self.schema["block"], config, known=True)


class StandinProvider(Provider):
    def __init__(self, address: str, schema: dict):
        self.address = address
        self.schema = schema
        self.resources = {
            name: type(f"Resource_{name}", (StandinResource,), {"type_name": name, "schema": s})
            for name, s in schema["resource_schemas"].items()
        }
        self.data_sources = {
            name: type(f"DataSource_{name}", (StandinDataSource,), {"type_name": name, "schema": s})
            for name, s in schema["data_source_schemas"].items()
        }

    def get_model_prefix(self) -> str:
        return ""

    def full_name(self) -> str:
        return self.address

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return to_schema(self.schema["provider"])

    def validate_config(self, diags: Diagnostics, config: dict):
        pass

    def configure_provider(self, diags: Diagnostics, config: dict):
        pass

    def get_resources(self) -> list:
        return list(self.resources.values())

    def get_data_sources(self) -> list:
        return list(self.data_sources.values())


class StandinServicer(ProviderServicer):
    """tf's servicer, with planning and the refusal to apply of a stand-in."""

    app: StandinProvider

    def PlanResourceChange(self, request: pb.PlanResourceChange.Request, context: grpc.ServicerContext):
        proposed = read_dynamic_value(request.proposed_new_state)
        block = self.app.schema["resource_schemas"][request.type_name]["block"]
        planned = fill_computed(block, proposed, known=False) if proposed is not None else None
        return pb.PlanResourceChange.Response(
            planned_state=to_dynamic_value(planned), planned_private=request.prior_private
        )

    def ApplyResourceChange(self, request: pb.ApplyResourceChange.Request, context: grpc.ServicerContext):
        diags = Diagnostics().add_error(
            "This provider is a schema-only stand-in",
            f"It validates and plans but cannot apply ({request.type_name}). "
            "Run terraform apply with the real provider (terraform init with registry access).",
        )
        return pb.ApplyResourceChange.Response(diagnostics=diags.to_pb())

    def ImportResourceState(self, request: pb.ImportResourceState.Request, context: grpc.ServicerContext):
        diags = Diagnostics().add_error("This provider is a schema-only stand-in", "It cannot import resources.")
        return pb.ImportResourceState.Response(diagnostics=diags.to_pb())

    def ReadResource(self, request: pb.ReadResource.Request, context: grpc.ServicerContext):
        return pb.ReadResource.Response(new_state=request.current_state, private=request.private)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    # terraform-provider-<name> <address> <schema.json> [go-plugin arguments]
    address, schema_path = argv[1], Path(argv[2])
    provider = StandinProvider(address, json.loads(schema_path.read_text()))
    # tf.runner builds tf.provider.ProviderServicer; hand it ours instead.
    import tf.provider

    tf.provider.ProviderServicer = StandinServicer
    runner.run_provider(provider, [argv[0], *argv[3:]])


if __name__ == "__main__":
    main()
