"""secrets.tf: the pipeline secrets are declared, and their values never pass through Terraform."""

from __future__ import annotations

import re

from tests.terraform.hcl import TF_DIR, _block, _expr, _render, _resource

# --- Secrets --------------------------------------------------------------------------


def test_secrets_declared_without_any_value(tf):
    secrets = tf["locals"]["secrets"]
    assert set(secrets) == {"mongodb-uri", "mail-api-token"}
    secret = _resource(tf, "google_secret_manager_secret", "pipeline")
    assert _expr(secret["for_each"]) == "local.secrets"
    assert _render(secret["secret_id"], tf, "mongodb-uri") == "mongodb-uri"
    assert _block(_block(secret, "replication"), "auto") == {}

    # A version declared in Terraform (or read by a data source) puts the value in its state.
    for kind in ("resource", "data"):
        versions = [t for t in tf[kind] if t.startswith("google_secret_manager_secret_version")]
        assert versions == [], f"{kind} {versions}: secret values must not be in Terraform"
    for path in TF_DIR.glob("*.tf"):
        text = path.read_text(encoding="utf-8")
        assert "secret_data" not in text, path.name
        assert not re.search(r"^\s*ephemeral\s", text, re.M), path.name
