"""The site-name rule, and that the server's copy in validate_doc_update.js agrees with it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

import pytest

from enqueue.errors import ConfigError
from enqueue.site_names import is_site_name, validate_site_name

VALID = ["alpha", "Site_1", "a", "A", "0", "1.b-c", "a.", "a-", "a_", "x" * 64, "9z"]
INVALID = ["", "-alpha", "_alpha", ".a", "al pha", "al/pha", "a:b", "é", "aé", "\uff41", "a\u0660", "x" * 65,
           "alpha\n", "\nalpha", "alpha\r", "a\x00", " alpha", "alpha "]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name: str) -> None:
    assert is_site_name(name)
    assert validate_site_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name: str) -> None:
    assert not is_site_name(name)
    with pytest.raises(ConfigError, match=r"^SITE .* is invalid: use 1-64 letters") as info:
        validate_site_name(name, "SITE")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [None, 7, ["alpha"], b"alpha"])
def test_only_strings_are_names(value: object) -> None:
    assert not is_site_name(value)


def _javascript_pattern() -> str:
    source = resources.files("enqueue").joinpath("validate_doc_update.js").read_text()
    found = re.findall(r"^\s*var SITE_NAME = (/.*/[a-z]*);$", source, re.MULTILINE)
    assert len(found) == 1, "validate_doc_update.js must define SITE_NAME exactly once"
    return found[0]


def test_the_server_rule_agrees_with_this_one() -> None:
    node = shutil.which("node")
    assert node is not None, "node (which runs the embedded test server) is needed to run the server's rule"
    names = VALID + INVALID
    script = (f"var SITE_NAME = {_javascript_pattern()};\n"
              "var names = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
              "process.stdout.write(JSON.stringify(names.map(function (n) { return SITE_NAME.test(n); })));\n")
    done = subprocess.run([node, "-e", script], input=json.dumps(names), capture_output=True, text=True,
                          timeout=30, check=True)
    server = dict(zip(names, json.loads(done.stdout)))
    assert server == {name: is_site_name(name) for name in names}
