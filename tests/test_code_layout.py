"""The code's shape, checked (issue 11): small glue and node modules, short parameter lists, no node names in the
core, one list of runtime dependencies. Host-free: reads the source files only."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("atomo_core", "atomo_host", "nodes")
MAX_MODULE_LINES = 300
MAX_PARAMETERS = 8


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (REPO / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", sources("atomo_host", "nodes"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_glue_and_node_modules_are_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines (limit {MAX_MODULE_LINES})"


def parameter_counts(path: Path) -> dict[str, int]:
    """Function name -> its named parameters, not counting self/cls (*args/**kwargs count as one each)."""
    counts = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
            names = names[1:] if names[:1] in (["self"], ["cls"], ["klass"]) else names
            counts[f"{node.name} (line {node.lineno})"] = len(names) + bool(a.vararg) + bool(a.kwarg)
    return counts


def test_no_function_has_more_than_eight_parameters():
    too_long = {f"{p.relative_to(REPO)}: {name}": n for p in sources(*PACKAGES)
                for name, n in parameter_counts(p).items() if n > MAX_PARAMETERS}
    assert not too_long, f"more than {MAX_PARAMETERS} parameters (use a frozen settings dataclass): {too_long}"


def test_the_counter_sees_long_parameter_lists(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("class A:\n    def m(self, a, b, c, d, e, f, g, h, i):\n        pass\n"
                 "def ok(a, b, c, d, e, f, g, *rest, **kw):\n    pass\n")
    counts = parameter_counts(f)
    assert counts == {"m (line 2)": 9, "ok (line 4)": 9}


def node_names() -> set[str]:
    """Every node id and display name the pack registers, read from the node modules."""
    names = set()
    for path in sources("nodes"):
        text = path.read_text()
        constants = dict(re.findall(r'^([A-Z_]+) = "([^"]+)"', text, flags=re.M))
        names |= {constants.get(v, v.strip('"')) for v in re.findall(r"node_id=([A-Z_]+|\"[^\"]+\")", text)}
        names |= set(re.findall(r'display_name="([^"]+)",\n\s+category=', text))
    return names


def test_the_core_names_no_node():
    names = node_names()
    assert len(names) == 20, sorted(names)  # ten nodes, each with an id and a display name
    found = {f"{p.relative_to(REPO)}: {n}" for p in sources("atomo_core") for n in names if n in p.read_text()}
    assert not found, f"node names in atomo_core (errors name the input; the node layer adds the node): {found}"


def requirement_names(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower().replace("_", "-")
            out[name] = line.replace(" ", "")
    return out


def test_pyproject_and_requirements_declare_the_same_runtime_dependencies():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = (REPO / "requirements.txt").read_text().splitlines()
    assert requirement_names(declared) == requirement_names(listed)
    assert {"einops", "safetensors", "scikit-image", "opencv-python-headless", "av"} <= set(requirement_names(listed))


def test_the_pack_is_imported_once_under_the_hosts_name():
    import sys

    import pack

    layers = pack.core("temporal_layers")
    assert layers.__name__ == f"{pack.PACK}.atomo_core.temporal_layers"
    assert layers is sys.modules[layers.__name__] and "atomo_core" not in sys.modules
    assert pack.core("weight_format").Site is pack.core("unet_sites", "Site")  # one class, wherever imported
