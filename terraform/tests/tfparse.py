"""Reads the repository's terraform with python-hcl2 into plain Python values.

python-hcl2 (8.x) keeps string literals with their quotes (`"pk"` -> '"pk"') and renders
expressions as `${...}`. `plain()` turns literals into bare strings and leaves expressions
as `${...}`, and drops the parser's `__is_block__` / `__comments__` markers, so tests can
compare literals directly and recognise references with `refs()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"

_MARKERS = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}


def unquote(value):
    """A quoted HCL string literal without its quotes; anything else unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def plain(value):
    """Recursively: unquoted literals and keys, parser markers removed."""
    if isinstance(value, dict):
        return {unquote(k): plain(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return unquote(value)


def is_expr(value) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def refs(value, kind: str) -> set[str]:
    """Names referenced as `<kind>.<name>` anywhere in value (kind: var, local, module)."""
    text = repr(value)
    return set(re.findall(rf"(?<![\w.]){kind}\.([A-Za-z_][A-Za-z0-9_]*)", text))


def parse_file(path: Path) -> dict:
    with path.open() as fh:
        return hcl2.load(fh)


@dataclass
class TfDir:
    """Everything declared in the .tf files of one directory (one terraform module)."""

    path: Path
    variables: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    locals: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)  # (type, name) -> body
    data: dict = field(default_factory=dict)  # (type, name) -> body
    modules: dict = field(default_factory=dict)  # name -> body
    raw: list = field(default_factory=list)  # (path, parsed, text)

    @property
    def text(self) -> str:
        return "\n".join(t for _, _, t in self.raw)


def load_dir(path: Path) -> TfDir:
    tf = TfDir(path)
    for f in sorted(path.glob("*.tf")):
        parsed = parse_file(f)
        tf.raw.append((f, parsed, f.read_text()))
        for block in parsed.get("variable", []):
            for name, body in plain(block).items():
                tf.variables[name] = body
        for block in parsed.get("output", []):
            for name, body in plain(block).items():
                tf.outputs[name] = body
        for block in parsed.get("locals", []):
            tf.locals.update(plain(block))
        for block in parsed.get("module", []):
            for name, body in plain(block).items():
                tf.modules[name] = body
        for kind, target in (("resource", tf.resources), ("data", tf.data)):
            for block in parsed.get(kind, []):
                for rtype, named in plain(block).items():
                    for rname, body in named.items():
                        target[(rtype, rname)] = body
    return tf


def module_dirs() -> list[Path]:
    """Every directory holding .tf files: modules, the stack, the environments.
    environments/common only holds files linked into each environment, not a module."""
    shared = TERRAFORM / "environments" / "common"
    return sorted({p.parent for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts and p.parent != shared})


def default_of(tf: TfDir, variable: str):
    return tf.variables[variable].get("default")
