"""Static checks of the Terraform under terraform/, one test module per concern as terraform/*.tf is split.

No Terraform binary or provider can be fetched here, so the configuration is
parsed with python-hcl2 and its resource graph is asserted: the names the
Python code relies on (functions, routes, subscriptions, environment
variables, BigQuery tables and their schema files, template parameters), the
wiring (notification after its publisher grant, the zip's contents, the
template specs and the scheduler's launch request) and the grants (least
privilege, exactly the roles each account needs, no basic roles).

The shared parsing fixtures are in conftest.py and the pure helpers in hcl.py.
"""

import pytest

# hcl.py's helpers assert too (_resource, _block, _merge_config...): give their failures pytest's detail.
pytest.register_assert_rewrite("tests.terraform.hcl")
