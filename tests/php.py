"""Run PHP's own `parse_str` and `http_build_query` (php-cli) on test data.

`make test` installs php-cli (Debian's `php-cli`) where it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

PHP_MAX_INPUT_VARS = 1_000_000

_PARSE = r"""
$out = [];
foreach (json_decode(stream_get_contents(STDIN), true) as $query) {
    parse_str($query, $parsed);
    $out[] = $parsed;
}
echo json_encode($out, JSON_UNESCAPED_UNICODE);
"""

_BUILD = r"""
$out = [];
foreach (json_decode(stream_get_contents(STDIN), true) as $data) {
    $out[] = http_build_query($data);
}
echo json_encode($out);
"""


def _php(code: str, items: list[Any]) -> list[Any]:
    php = shutil.which("php")
    if php is None:
        raise RuntimeError("php-cli is not installed: `make test` installs it (apt-get install php-cli)")
    # parse_str stops at max_input_vars fields (1,000 by default): lift it past any body's MAX_KEYS.
    command = [php, "-d", f"max_input_vars={PHP_MAX_INPUT_VARS}", "-r", code]
    result = subprocess.run(command, input=json.dumps(items), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def parse_str(queries: list[str]) -> list[Any]:
    """PHP's parse_str of each query, as json_encode renders the resulting arrays."""
    return _php(_PARSE, queries)


def http_build_query(data: list[dict[str, Any]]) -> list[str]:
    return _php(_BUILD, data)
