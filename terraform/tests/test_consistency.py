"""Static checks of terraform/ against the code, the config files and the docs.

Terraform cannot run here, so these tests stand in for `terraform validate` (every
reference resolves, every module input exists) and check what no validator can: that the
tables, streams, ports, environment variables, IAM actions, alarms and the image agree with
src/, config/, docs/data-model.md, docs/runbooks/ and the Dockerfile.

Run: scripts/check-terraform (it installs python-hcl2 and pytest into target/infra-venv).
Each comparison is a function that returns the differences it finds, and the "detects"
tests feed it a deliberate mismatch, so a check that can no longer fail is itself a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tfparse import (
    ROOT,
    TERRAFORM,
    TfDir,
    default_of,
    is_expr,
    load_dir,
    module_dirs,
    parse_file,
    plain,
    refs,
)

MODULES = TERRAFORM / "modules"
DATA_MODEL = ROOT / "docs" / "data-model.md"
RUNBOOKS = ROOT / "docs" / "runbooks"
DOCKERFILE = ROOT / "Dockerfile"

# Client calls that only create or reshape resources for local development and tests
# (kinesis.create_if_missing, dynamodb.create_tables_if_missing); terraform owns those
# resources in AWS, so the task role must not get them.
DEV_ONLY_ACTIONS = {
    "CreateStream", "SplitShard", "MergeShards", "DeleteStream", "CreateTable", "DeleteTable", "UpdateTimeToLive",
}


@pytest.fixture(scope="session")
def dirs() -> dict[str, TfDir]:
    return {str(p.relative_to(TERRAFORM)): load_dir(p) for p in module_dirs()}


def mod(dirs, name: str) -> TfDir:
    return dirs[f"modules/{name}"]


# --- parsing and wiring ("terraform validate" without terraform) -----------------------


def test_every_terraform_file_parses():
    files = [p for p in TERRAFORM.rglob("*") if p.suffix in {".tf", ".tfvars"}]
    assert len(files) >= 40, f"only {len(files)} terraform files found"
    for f in files:
        parse_file(f)  # raises on a syntax error


def wiring_problems(tf: TfDir, dirs: dict[str, TfDir]) -> list[str]:
    problems = []
    where = tf.path.relative_to(TERRAFORM)
    everything = [tf.variables, tf.outputs, tf.locals, tf.resources, tf.data, tf.modules]
    for name in sorted(set().union(*(refs(part, "var") for part in everything)) - set(tf.variables)):
        problems.append(f"{where}: var.{name} is used but not declared")
    for name in sorted(set().union(*(refs(part, "local") for part in everything)) - set(tf.locals)):
        problems.append(f"{where}: local.{name} is used but not defined")
    for name, body in tf.variables.items():
        if not body.get("description") or "type" not in body:
            problems.append(f"{where}: variable {name} needs a type and a description")
    for name, body in tf.outputs.items():
        if not body.get("description"):
            problems.append(f"{where}: output {name} needs a description")
    # module.<call>.<output> references
    for text_part in everything:
        for call, output in re.findall(r"(?<![\w.])module\.(\w+)\.(\w+)", repr(text_part)):
            if call not in tf.modules:
                problems.append(f"{where}: module.{call} is not a module call here")
                continue
            callee = dirs.get(str((tf.path / tf.modules[call]["source"]).resolve().relative_to(TERRAFORM)))
            if callee is not None and output not in callee.outputs:
                problems.append(f"{where}: module.{call}.{output}: {tf.modules[call]['source']} has no such output")
    # module call arguments
    for call, body in tf.modules.items():
        target = (tf.path / body["source"]).resolve()
        key = str(target.relative_to(TERRAFORM))
        if key not in dirs:
            problems.append(f"{where}: module {call}: source {body['source']} has no .tf files")
            continue
        callee = dirs[key]
        meta = {"source", "version", "providers", "depends_on", "count", "for_each"}
        for arg in sorted(set(body) - meta - set(callee.variables)):
            problems.append(f"{where}: module {call} passes {arg}, which {key} does not declare")
        for var, vbody in callee.variables.items():
            if "default" not in vbody and var not in body:
                problems.append(f"{where}: module {call} does not pass required variable {var}")
    return problems


def test_every_reference_and_module_input_resolves(dirs):
    problems = [p for tf in dirs.values() for p in wiring_problems(tf, dirs)]
    assert not problems, "\n".join(problems)


def test_wiring_check_detects_a_missing_module_input(dirs):
    stack = dirs["stack"]
    broken = TfDir(stack.path, stack.variables, stack.outputs, stack.locals, stack.resources, stack.data,
                   {**stack.modules, "kinesis": {k: v for k, v in stack.modules["kinesis"].items() if k != "namespace"}})
    assert any("required variable namespace" in p for p in wiring_problems(broken, dirs))


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_example_tfvars_set_declared_variables(dirs, env):
    tf = dirs[f"environments/{env}"]
    values = plain(parse_file(tf.path / "terraform.tfvars"))
    assert set(values) <= set(tf.variables), f"undeclared: {set(values) - set(tf.variables)}"
    required = {v for v, body in tf.variables.items() if "default" not in body}
    assert required <= set(values), f"{env}/terraform.tfvars misses {required - set(values)}"
    assert tf.modules["fleetwire"]["environment"] == env


# --- DynamoDB tables: terraform == docs/data-model.md == code --------------------------


def terraform_tables(dirs) -> dict[str, dict]:
    out = {}
    for name, t in mod(dirs, "dynamodb").locals["tables"].items():
        out[name] = {
            "hash": (t["hash_key"], t["hash_type"]),
            "range": None if t["range_key"] is None else (t["range_key"], t["range_type"]),
            "ttl": t["ttl_attribute"],
            "indexes": {
                i["name"]: ((i["hash_key"], i["hash_type"]),
                            None if i.get("range_key") is None else (i["range_key"], i["range_type"]),
                            i["projection"])
                for i in t["indexes"]
            },
        }
    return out


def _key(cell: str):
    cell = cell.strip()
    if cell in {"—", "-", ""}:
        return None
    m = re.fullmatch(r"`(\w+)` \((S|N|B)\)", cell)
    assert m, f"data-model.md: cannot read key {cell!r}"
    return (m.group(1), m.group(2))


def documented_tables(text: str) -> dict[str, dict]:
    block = text.split("<!-- tables:begin -->", 1)[1].split("<!-- tables:end -->", 1)[0]
    rows = [line for line in block.strip().splitlines() if line.startswith("| `")]
    out = {}
    for row in rows:
        table, pk, sk, indexes, ttl = [c.strip() for c in row.strip().strip("|").split("|")]
        idx = {}
        if indexes not in {"—", "-"}:
            for part in indexes.split(";"):
                m = re.fullmatch(r"`(\w+)`: (.+?) / (.+?), (KEYS_ONLY|ALL|INCLUDE)", part.strip())
                assert m, f"data-model.md: cannot read index {part!r}"
                idx[m.group(1)] = (_key(m.group(2)), _key(m.group(3)), m.group(4))
        out[table.strip("`")] = {
            "hash": _key(pk),
            "range": _key(sk),
            "ttl": None if ttl in {"—", "-"} else ttl.strip("`"),
            "indexes": idx,
        }
    return out


def table_differences(terraform: dict, documented: dict) -> list[str]:
    diffs = [f"table {t} only in terraform" for t in sorted(set(terraform) - set(documented))]
    diffs += [f"table {t} only in docs/data-model.md" for t in sorted(set(documented) - set(terraform))]
    for t in sorted(set(terraform) & set(documented)):
        for aspect in ("hash", "range", "ttl", "indexes"):
            if terraform[t][aspect] != documented[t][aspect]:
                diffs.append(f"{t}.{aspect}: terraform {terraform[t][aspect]} != docs {documented[t][aspect]}")
    return diffs


def test_tables_match_the_data_model(dirs):
    documented = documented_tables(DATA_MODEL.read_text())
    assert len(documented) == 11
    assert table_differences(terraform_tables(dirs), documented) == []


def test_table_check_detects_a_mismatch(dirs):
    documented = documented_tables(DATA_MODEL.read_text())
    tf = terraform_tables(dirs)
    tf["history"]["range"] = ("bucket", "S")
    tf["vehicles"]["indexes"]["by_tenant"] = (("tenant_id", "S"), ("vehicle_id", "S"), "ALL")
    diffs = table_differences(tf, documented)
    assert any(d.startswith("history.range") for d in diffs)
    assert any(d.startswith("vehicles.indexes") for d in diffs)


DYNAMODB_SRC = ROOT / "src/backends/dynamodb"


def table_spec_from_code(file: str) -> dict:
    """The TableSpec a backend hands to tables.rs `Table::connect` (what
    create_tables_if_missing builds locally): hash key and its one KEYS_ONLY index."""
    src = (DYNAMODB_SRC / file).read_text()
    const = dict(re.findall(r'const (\w+): &str = "([^"]+)";', src))
    const.update(re.findall(r'const (\w+): &str = "([^"]+)";', (DYNAMODB_SRC / "tables.rs").read_text()))
    spec = re.search(
        r"TableSpec \{\s*hash: (\w+),\s*range: None,\s*index: (None|Some\((?:KeysOnlyIndex \{(.*?)\}|(\w+))\)),\s*ttl: None,",
        src,
        re.S,
    )
    assert spec, f"{file}: TableSpec not found"
    shared = (DYNAMODB_SRC / "tables.rs").read_text()
    index = None
    fields_text = spec.group(3)
    if spec.group(4):
        # A KeysOnlyIndex constant shared through tables.rs.
        shared_index = rf"const {spec.group(4)}: KeysOnlyIndex = KeysOnlyIndex \{{(.*?)\}};"
        fields_text = re.search(shared_index, shared, re.S).group(1)
    if fields_text:
        # Each field is a &str constant or a string literal.
        fields = {k: const.get(v, v.strip('"')) for k, v in re.findall(r'(\w+): (\w+|"\w+")', fields_text)}
        index = {fields["name"]: (fields["hash"], fields["range"])}
    # The spec has no sort key (`range: None` above), and tables.rs makes the hash key and
    # the index keys S.
    assert "ScalarAttributeType::S" in shared and "ScalarAttributeType::N" not in shared
    assert "KeyType::Range" not in src
    return {"hash": (const[spec.group(1)], "S"), "index": index}


def test_lease_table_matches_the_code(dirs):
    spec = table_spec_from_code("lease_store.rs")
    assert spec == {"hash": ("leaseKey", "S"), "index": None}
    tables = terraform_tables(dirs)
    assert tables["leases"]["hash"] == spec["hash"]
    assert tables["leases"]["range"] is None and tables["leases"]["indexes"] == {}
    # Every attribute the code writes is documented in the data model.
    src = (ROOT / "src/backends/dynamodb/lease_store.rs").read_text()
    attrs = re.findall(r'const (?:LEASE_\w+|CHECKPOINT|PARENT_SHARD_IDS|OWNER_SWITCHES): &str = "(\w+)"', src)
    assert len(attrs) == 6
    doc = DATA_MODEL.read_text()
    assert all(f"`{a}`" in doc for a in attrs), [a for a in attrs if f"`{a}`" not in doc]


def test_state_and_registry_tables_match_the_code(dirs):
    tables = terraform_tables(dirs)
    for table, file in (("vehicles", "state_store.rs"), ("registry", "registry.rs")):
        spec = table_spec_from_code(file)
        assert tables[table]["hash"] == spec["hash"], table
        assert tables[table]["range"] is None, table
        ((name, keys),) = spec["index"].items()
        hash_key, range_key, projection = tables[table]["indexes"][name]
        assert (hash_key[0], range_key[0], projection) == (*keys, "KEYS_ONLY"), table


def test_table_names_pass_the_codes_rules(dirs):
    """fleetwire-<env>-<table> for every environment passes validate_table_name."""
    rs = (ROOT / "src/backends/dynamodb/mod.rs").read_text()
    lo, hi = map(int, re.search(r"TABLE_NAME_CHARS: .*? = (\d+)\.\.=(\d+);", rs).groups())
    assert "matches!(c, '_' | '.' | '-')" in rs
    ddb = mod(dirs, "dynamodb")
    assert ddb.resources[("aws_dynamodb_table", "this")]["name"] == "${var.name_prefix}-${each.key}"
    assert dirs["stack"].locals["name_prefix"] == "fleetwire-${var.environment}"
    for env in ("dev", "prod"):
        for table in ddb.locals["tables"]:
            name = f"fleetwire-{env}-{table}"
            assert lo <= len(name) <= hi and re.fullmatch(r"[A-Za-z0-9_.-]+", name), name


# --- IAM: exactly the calls the code makes ---------------------------------------------


def client_calls(path: Path) -> set[str]:
    """SDK operations a backend calls (`.client.op()` / `.op()` right after `client`)."""
    src = path.read_text()
    src = src.split("#[cfg(test)]")[0]
    ops = re.findall(r"\bclient\s*\.(\w+)\(\)", src)
    return {"".join(w.capitalize() for w in op.split("_")) for op in ops}


def policy_actions(dirs, sids: tuple[str, ...], prefix: str) -> set[str]:
    statements = mod(dirs, "iam").data[("aws_iam_policy_document", "task")]["statement"]
    actions = set()
    for st in statements:
        if st.get("sid") in sids:
            actions |= {a.split(":", 1)[1] for a in st["actions"] if a.startswith(prefix + ":")}
    return actions


def test_kinesis_permissions_are_the_calls_the_code_makes(dirs):
    called = client_calls(ROOT / "src/backends/kinesis/stream.rs")
    assert {"PutRecords", "GetRecords", "GetShardIterator", "ListShards", "DescribeStreamSummary"} <= called
    granted = policy_actions(dirs, ("KinesisProduce", "KinesisConsume"), "kinesis")
    assert granted == called - DEV_ONLY_ACTIONS


def test_lease_table_permissions_are_the_calls_the_code_makes(dirs):
    called = client_calls(ROOT / "src/backends/dynamodb/lease_store.rs")
    assert {"Scan", "PutItem", "UpdateItem", "DeleteItem", "DescribeTable"} <= called
    granted = set(mod(dirs, "dynamodb").locals["tables"]["leases"]["task_actions"])
    assert granted == called - DEV_ONLY_ACTIONS


def test_state_and_registry_permissions_are_the_calls_the_code_makes(dirs):
    shared = client_calls(ROOT / "src/backends/dynamodb/tables.rs")
    tables = mod(dirs, "dynamodb").locals["tables"]
    for table, code in (("vehicles", "state_store.rs"), ("registry", "registry.rs"), ("api_keys", "api_keys.rs")):
        called = client_calls(ROOT / "src/backends/dynamodb" / code) | shared
        assert {"GetItem", "UpdateItem", "Query", "BatchGetItem"} <= called, table
        assert set(tables[table]["task_actions"]) == called - DEV_ONLY_ACTIONS, table


def test_state_tables_are_found_through_the_table_prefix(dirs):
    ecs, dyn, stack = mod(dirs, "ecs"), mod(dirs, "dynamodb"), dirs["stack"]
    assert ecs.locals["environment"]["FLEETWIRE_DYNAMODB__TABLE_PREFIX"] == "${var.name_prefix}-"
    assert dyn.resources[("aws_dynamodb_table", "this")]["name"] == "${var.name_prefix}-${each.key}"
    assert stack.modules["ecs"]["name_prefix"] == stack.modules["dynamodb"]["name_prefix"] == "${local.name_prefix}"
    # The logical names the code appends are the terraform table keys.
    rs = (ROOT / "src/backends/dynamodb/mod.rs").read_text()
    for const in ("VEHICLES_TABLE", "REGISTRY_TABLE"):
        logical = re.search(rf'pub const {const}: &str = "(\w+)";', rs).group(1)
        assert logical in dyn.locals["tables"], logical


def test_iam_grants_the_dynamodb_module_actions_per_table(dirs):
    iam = mod(dirs, "iam")
    dyn = [s for s in iam.data[("aws_iam_policy_document", "task")]["dynamic"] if "statement" in s]
    assert any(d["statement"]["for_each"] == "${var.task_actions}" for d in dyn)
    assert dirs["stack"].modules["iam"]["task_actions"] == "${module.dynamodb.task_actions}"
    valid = {"GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
             "BatchWriteItem", "DescribeTable", "ConditionCheckItem"}
    for table, spec in mod(dirs, "dynamodb").locals["tables"].items():
        actions = spec["task_actions"]
        assert set(actions) <= valid, f"{table}: {set(actions) - valid}"
        assert "Scan" not in actions or table == "leases", f"{table}: tenant tables are never scanned"


# --- streams ---------------------------------------------------------------------------


def test_streams_are_named_like_teslas_dispatcher(dirs):
    kin = mod(dirs, "kinesis")
    assert kin.resources[("aws_kinesis_stream", "topic")]["name"] == "${var.namespace}_${each.key}"
    assert default_of(kin, "topics") == ["V", "alerts", "errors", "connectivity"]
    assert kin.outputs["vehicle_data_stream_name"]["value"] == '${aws_kinesis_stream.topic["V"].name}'
    assert dirs["stack"].modules["kinesis"]["namespace"] == "${local.name_prefix}"
    # The code's own default follows the same <namespace>_V pattern.
    default = tomllib.loads((ROOT / "config/default.toml").read_text())
    assert default["kinesis"]["stream_name"].endswith("_V")
    # Rendered names pass the code's validate_stream_name.
    rs = (ROOT / "src/backends/kinesis/mod.rs").read_text()
    limit = int(re.search(r"MAX_STREAM_NAME_CHARS: usize = (\d+);", rs).group(1))
    for env in ("dev", "prod"):
        for topic in default_of(kin, "topics"):
            name = f"fleetwire-{env}_{topic}"
            assert len(name) <= limit and re.fullmatch(r"[A-Za-z0-9_.-]+", name)


def test_the_consumer_reads_the_v_stream_and_the_lease_table(dirs):
    ecs, stack = mod(dirs, "ecs"), dirs["stack"]
    env = ecs.locals["environment"]
    assert env["FLEETWIRE_KINESIS__STREAM_NAME"] == "${var.kinesis_stream_name}"
    assert stack.modules["ecs"]["kinesis_stream_name"] == "${module.kinesis.vehicle_data_stream_name}"
    assert env["FLEETWIRE_DYNAMODB__LEASE_TABLE"] == "${var.lease_table_name}"
    assert stack.modules["ecs"]["lease_table_name"] == "${module.dynamodb.lease_table_name}"
    assert mod(dirs, "dynamodb").outputs["lease_table_name"]["value"] == '${aws_dynamodb_table.this["leases"].name}'
    assert stack.modules["cloudwatch"]["vehicle_stream_name"] == "${module.kinesis.vehicle_data_stream_name}"
    assert default_of(mod(dirs, "iam"), "consumed_topics") == ["V"]


def test_the_archive_writes_to_the_stack_bucket_where_the_role_may_put(dirs):
    ecs, stack, iam = mod(dirs, "ecs"), dirs["stack"], mod(dirs, "iam")
    env = ecs.locals["environment"]
    assert env["FLEETWIRE_ARCHIVE__BUCKET"] == "${var.archive_bucket_name}"
    assert stack.modules["ecs"]["archive_bucket_name"] == "${module.s3_archive.bucket_name}"
    assert stack.modules["iam"]["archive_bucket_arn"] == "${module.s3_archive.bucket_arn}"
    aws = tomllib.loads((ROOT / "config/aws.toml").read_text())["archive"]
    assert aws["enabled"] is True and aws["backend"] == "s3"
    # The code writes <prefix>raw/year=.../part-<uuid>.jsonl; the task role may put exactly there.
    prefix = aws.get("prefix", "")
    put = next(s for s in iam.data[("aws_iam_policy_document", "task")]["statement"] if s.get("sid") == "ArchiveObjects")
    assert "s3:PutObject" in put["actions"]
    assert "${var.archive_bucket_arn}/" + prefix + "raw/*" in put["resources"]
    rs = (ROOT / "actors/src/archive/parts.rs").read_text()
    assert '"raw/year={:04}/month={:02}/day={:02}/hour={:02}"' in rs
    # The lifecycle rules age the same prefix.
    rules = mod(dirs, "s3_archive").resources[("aws_s3_bucket_lifecycle_configuration", "archive")]["rule"]
    blocks = lambda b: b if isinstance(b, list) else [b]  # noqa: E731 (hcl2 gives blocks as lists)
    prefixes = {f.get("prefix") for r in blocks(rules) for f in blocks(r.get("filter") or [])}
    assert prefix + "raw/" in prefixes


DEAD_LETTERS_RS = ROOT / "src/backends/dynamodb/dead_letters.rs"
DEAD_LETTER_PORT_RS = ROOT / "actors/src/producer/dead_letter.rs"


def dead_letter_payload_problems(dirs, dead_letters_rs: str, port_rs: str, aws_toml: str) -> list[str]:
    """Large dead-letter payloads: the AWS profile sends them to the archive bucket, the task
    role may make exactly the S3 calls src/backends/dynamodb/dead_letters.rs makes under the
    key prefix it writes, and a lifecycle rule expires that prefix with the letters."""
    iam, s3 = mod(dirs, "iam"), mod(dirs, "s3_archive")
    problems = []
    aws = tomllib.loads(aws_toml)
    if aws.get("dynamodb", {}).get("dead_letter_payloads") != "archive_bucket":
        problems.append("config/aws.toml: dynamodb.dead_letter_payloads is not \"archive_bucket\"")
    prefix = aws.get("archive", {}).get("prefix", "")
    m = re.search(r'pub const DEAD_LETTER_OBJECTS: &str = "([^"]+)";', dead_letters_rs)
    objects = prefix + (m.group(1) if m else "?")
    # The S3 calls of the store, through S3Bucket's put/get/delete.
    src = dead_letters_rs.split("#[cfg(test)]")[0]
    called = {f"s3:{op.capitalize()}Object" for op in set(re.findall(r"\bbucket\s*\.(put|get|delete)\(", src))}
    st = next((s for s in iam.data[("aws_iam_policy_document", "task")]["statement"] if s.get("sid") == "DeadLetterPayloads"), None)
    if st is None:
        return problems + ["no DeadLetterPayloads statement in the task policy"]
    if set(st["actions"]) != called:
        problems.append(f"DeadLetterPayloads grants {sorted(st['actions'])}, the code calls {sorted(called)}")
    if st["resources"] != ["${var.archive_bucket_arn}/" + objects + "*"]:
        problems.append(f"DeadLetterPayloads resources {st['resources']}, the code writes {objects}")
    days = re.search(r"DEAD_LETTER_RETENTION: chrono::Duration = chrono::Duration::days\((\d+)\);", port_rs)
    rules = s3.resources[("aws_s3_bucket_lifecycle_configuration", "archive")]["rule"]
    blocks = lambda b: b if isinstance(b, list) else [b]  # noqa: E731 (hcl2 gives blocks as lists)
    rule = next((r for r in blocks(rules) if any(f.get("prefix") == objects for f in blocks(r.get("filter") or []))), None)
    if rule is None:
        return problems + [f"no lifecycle rule on {objects}"]
    expire = blocks(rule.get("expiration") or [{}])[0].get("days")
    if expire == "${var.dead_letter_expire_after_days}":
        expire = default_of(s3, "dead_letter_expire_after_days")
    if not days or expire != int(days.group(1)):
        problems.append(f"{objects} expires after {expire} days, letters after {days.group(1) if days else '?'}")
    return problems


def test_large_dead_letter_payloads_go_where_the_role_may_write_and_expire_with_the_letters(dirs):
    assert dead_letter_payload_problems(
        dirs, DEAD_LETTERS_RS.read_text(), DEAD_LETTER_PORT_RS.read_text(), (ROOT / "config/aws.toml").read_text()
    ) == []


def test_dead_letter_payload_check_detects_mismatches(dirs):
    rs, port, aws = DEAD_LETTERS_RS.read_text(), DEAD_LETTER_PORT_RS.read_text(), (ROOT / "config/aws.toml").read_text()
    def found(what, **changed):
        args = {"dead_letters_rs": rs, "port_rs": port, "aws_toml": aws, **changed}
        return any(what in p for p in dead_letter_payload_problems(dirs, **args))
    assert found("resources", dead_letters_rs=rs.replace('DEAD_LETTER_OBJECTS: &str = "', 'DEAD_LETTER_OBJECTS: &str = "x', 1))
    assert found("no lifecycle rule", aws_toml=aws.replace('bucket = "fleetwire-archive"', 'bucket = "fleetwire-archive"\nprefix = "p/"', 1))
    assert found("grants", dead_letters_rs=rs.replace("bucket.delete(", "bucket.remove(", 1))
    assert found("expires after", port_rs=port.replace("Duration::days(30)", "Duration::days(7)", 1))
    assert found("dead_letter_payloads", aws_toml=aws.replace('dead_letter_payloads = "archive_bucket"', 'dead_letter_payloads = "truncate"'))


VAULT_KMS_RS = ROOT / "src/vault/kms.rs"


def vault_kms_problems(dirs, kms_rs: str, aws_toml: str) -> list[str]:
    """The VIN vault's KMS key: the task finds the key the kms module creates, and the task
    role may make exactly the calls src/vault/kms.rs makes, with the context it sends."""
    ecs, iam, kms = mod(dirs, "ecs"), mod(dirs, "iam"), mod(dirs, "kms")
    problems = []
    vault = tomllib.loads(aws_toml).get("vault", {})
    if vault.get("wrapper") != "kms":
        problems.append(f"config/aws.toml: vault.wrapper = {vault.get('wrapper')!r}, not \"kms\"")
    env = ecs.locals["environment"]
    alias = kms.resources[("aws_kms_alias", "vin_vault")]["name"]
    if env.get("FLEETWIRE_VAULT__KMS__KEY_ID") != alias:
        problems.append(f"FLEETWIRE_VAULT__KMS__KEY_ID = {env.get('FLEETWIRE_VAULT__KMS__KEY_ID')!r}, alias is {alias!r}")
    if env.get("FLEETWIRE_VAULT__KMS__REGION") != "${local.region}":
        problems.append("FLEETWIRE_VAULT__KMS__REGION is not the stack's region")
    if dirs["stack"].modules["iam"]["vin_vault_key_arn"] != "${module.kms.vin_vault_key_arn}":
        problems.append("iam.vin_vault_key_arn is not the kms module's vault key")
    src = kms_rs.split("#[cfg(test)]")[0]
    called = {"".join(w.capitalize() for w in op.split("_")) for op in re.findall(r"\bclient\s*\.(\w+)\(\)", src)}
    st = next((s for s in iam.data[("aws_iam_policy_document", "task")]["statement"] if s.get("sid") == "VinVaultDataKeys"), None)
    if st is None:
        return problems + ["no VinVaultDataKeys statement in the task policy"]
    granted = {a.removeprefix("kms:") for a in st["actions"]}
    if granted != called:
        problems.append(f"VinVaultDataKeys grants {sorted(granted)}, the code calls {sorted(called)}")
    if st["resources"] != ["${var.vin_vault_key_arn}"]:
        problems.append(f"VinVaultDataKeys resources {st['resources']}")
    context = re.search(r'pub const CONTEXT_KEY: &str = "([^"]+)";', kms_rs)
    conditions = st.get("condition") or []
    conditions = conditions if isinstance(conditions, list) else [conditions]
    wanted = {"test": "StringLike", "variable": f"kms:EncryptionContext:{context.group(1) if context else '?'}", "values": ["~key#*"]}
    if not any({k: c.get(k) for k in wanted} == wanted for c in conditions):
        problems.append(f"VinVaultDataKeys has no condition {wanted}")
    return problems


def test_the_vault_key_reaches_the_task_with_exactly_the_calls_it_makes(dirs):
    assert vault_kms_problems(dirs, VAULT_KMS_RS.read_text(), (ROOT / "config/aws.toml").read_text()) == []


def test_vault_key_check_detects_mismatches(dirs):
    rs, aws = VAULT_KMS_RS.read_text(), (ROOT / "config/aws.toml").read_text()
    more_calls = rs.replace(".encrypt()", ".generate_data_key()", 1)
    assert any("VinVaultDataKeys grants" in p for p in vault_kms_problems(dirs, more_calls, aws))
    other_context = rs.replace('CONTEXT_KEY: &str = "', 'CONTEXT_KEY: &str = "x', 1)
    assert any("no condition" in p for p in vault_kms_problems(dirs, other_context, aws))
    local = aws.replace('wrapper = "kms"', 'wrapper = "local"')
    assert any("vault.wrapper" in p for p in vault_kms_problems(dirs, rs, local))


# --- configuration: environment variables are config keys -------------------------------


def config_schema() -> dict[str, set[str]]:
    """section (dotted) -> keys, from config/default.toml, which lists every key with its
    default (a Rust test keeps it identical to Config::default()); optional keys without a
    default appear there commented out (`# key = value`)."""
    text = (ROOT / "config/default.toml").read_text()
    schema: dict[str, set[str]] = {}

    def walk(prefix, table):
        for k, v in table.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                schema.setdefault(prefix.rstrip("."), set()).add(k)
            if isinstance(v, dict):
                schema.setdefault(f"{prefix}{k}", set())

    walk("", tomllib.loads(text))
    section = None
    for line in text.splitlines():
        if m := re.fullmatch(r"\[([\w.]+)\]\s*", line):
            section = m.group(1)
        elif section and (m := re.match(r"#\s*(\w+)\s*=\s*\S", line)):
            schema[section].add(m.group(1))
    return schema


def env_var_problems(names: set[str], schema: dict[str, set[str]]) -> list[str]:
    problems = []
    for name in sorted(names):
        # figment: strip the prefix, lower-case, split nesting levels on "__".
        parts = name.removeprefix("FLEETWIRE_").lower().split("__")
        if not name.startswith("FLEETWIRE_") or len(parts) < 2 or not all(re.fullmatch(r"[a-z0-9_]+", p) for p in parts):
            problems.append(f"{name}: not FLEETWIRE_<SECTION>__<KEY> (src/config.rs reads only those)")
            continue
        section, key = ".".join(parts[:-1]), parts[-1]
        if section not in schema:
            problems.append(f"{name}: no section [{section}] in config/default.toml")
        elif key not in schema[section]:
            problems.append(f"{name}: no key {key} in [{section}]")
    return problems


def test_config_schema_is_read_correctly():
    schema = config_schema()
    assert {"http", "admin", "kinesis", "dynamodb", "redis", "consumer", "embedded.stream"} <= set(schema)
    assert {"endpoint_url", "create_if_missing", "stream_name"} <= schema["kinesis"]
    assert "worker_id" in schema["consumer"] and "data_dir" in schema["embedded"]


def test_task_environment_variables_are_config_keys(dirs):
    ecs = mod(dirs, "ecs")
    schema = config_schema()
    names = set(ecs.locals["environment"]) | set(ecs.locals["secrets"])
    for env in ("dev", "prod"):
        names |= set(plain(parse_file(TERRAFORM / f"environments/{env}/terraform.tfvars")).get("extra_environment", {}))
    assert env_var_problems(names, schema) == []
    tesla = set(ecs.locals["tesla_environment"])
    assert env_var_problems(tesla, schema) == []
    # The listener's variables apply only behind the switch, which is off by default.
    assert "var.enable_tesla_listener ? local.tesla_environment : {}" in ecs.locals["all_environment"]
    assert default_of(ecs, "enable_tesla_listener") is False
    # Secrets are not in the plain environment, and the init container's variables are not config.
    assert not set(ecs.locals["secrets"]) & set(ecs.locals["environment"])
    assert not any(k.startswith("FLEETWIRE_") for k in ecs.locals["tesla_secrets"])


def test_authentication_settings_reach_the_task(dirs):
    """The node does not start without [auth]; its two shared secrets come from Secrets Manager."""
    ecs, stack = mod(dirs, "ecs"), dirs["stack"]
    env, secrets = ecs.locals["environment"], ecs.locals["secrets"]
    assert {"FLEETWIRE_AUTH__ISSUER", "FLEETWIRE_AUTH__JWKS_URL", "FLEETWIRE_AUTH__AUDIENCES"} <= set(env)
    assert {"FLEETWIRE_ADMIN__TOKEN", "FLEETWIRE_AUTH__TICKET_KEY"} <= set(secrets)
    assert not any("TOKEN" in k or "KEY" in k for k in env if k.startswith("FLEETWIRE_AUTH") or k.startswith("FLEETWIRE_ADMIN"))
    # The task may read those secrets, and nothing else is granted beyond the listed ones.
    assert "aws_secretsmanager_secret.auth" in str(stack.modules["iam"]["secret_arns"])
    # Cognito's groups are fleetwire's role names (src/auth/roles.rs).
    roles = (ROOT / "src/auth/roles.rs").read_text()
    groups = mod(dirs, "cognito").resources[("aws_cognito_user_group", "role")]["for_each"]
    for group in ("viewer", "operator", "tenant-admin"):
        assert group in groups and f'"{group}"' in roles, group


def test_environment_check_detects_unknown_keys():
    schema = config_schema()
    assert env_var_problems({"FLEETWIRE_KINESIS__STREAM"}, schema) == ["FLEETWIRE_KINESIS__STREAM: no key stream in [kinesis]"]
    assert env_var_problems({"FLEETWIRE_NOPE__X"}, schema)
    assert env_var_problems({"FLEETWIRE_HTTP_LISTEN"}, schema)
    assert env_var_problems({"FLEETWIRE_EMBEDDED__STREAM__SHARDS"}, schema) == []


def test_aws_profile_uses_the_provisioned_backends():
    aws = tomllib.loads((ROOT / "config/aws.toml").read_text())
    assert aws["backends"] == {
        "stream": "kinesis", "leases": "dynamodb", "state": "dynamodb", "fanout": "redis", "api_keys": "dynamodb",
    }
    assert aws.get("tenancy", {}).get("unknown_vehicles", "dead_letter") == "dead_letter", \
        "production never provisions unknown vehicles on its own"
    for section in ("kinesis", "dynamodb", "archive"):
        s = aws.get(section, {})
        assert not s.get("static_credentials") and "endpoint_url" not in s, f"[{section}] must use AWS"
    assert "create_if_missing" not in aws.get("kinesis", {})
    assert not aws.get("dynamodb", {}).get("create_tables_if_missing")
    assert "tesla" not in aws, "terraform turns the listener on (enable_tesla_listener); keep it out of the profile"


def rendered_environment(dirs) -> dict[str, str]:
    """The fleetwire container's environment as the dev stack renders it (what the binary sees)."""
    ecs = mod(dirs, "ecs")
    values = {f"var.{k}": str(v.get("default")) for k, v in ecs.variables.items() if "default" in v}
    values.update({
        "var.kinesis_stream_name": "fleetwire-dev_V",
        "var.lease_table_name": "fleetwire-dev-leases",
        "var.archive_bucket_name": "fleetwire-dev-archive-123456789012",
        "var.name_prefix": "fleetwire-dev",
        "local.region": "us-east-1",
        "var.auth_issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
        "var.auth_jwks_url": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example/.well-known/jwks.json",
        "local.auth_audiences_json": '["example-client-id"]',
    })

    def render(v):
        return re.sub(r"\$\{([\w.]+)\}", lambda m: values[m.group(1)], v)

    env = {k: render(v) for k, v in ecs.locals["environment"].items()}
    env["FLEETWIRE_REDIS__URL"] = "rediss://:token@primary.example.internal:6379/"
    return env


def fleetwire_binary() -> Path | None:
    explicit = os.environ.get("FLEETWIRE_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("debug", "release"):
        if (target / profile / "fleetwire").is_file():
            return target / profile / "fleetwire"
    return None


def test_the_binary_accepts_the_task_configuration(dirs, tmp_path):
    """The strongest check: the real parser reads config/aws.toml plus the task's variables."""
    binary = fleetwire_binary()
    if binary is None:
        pytest.skip("no fleetwire binary (set FLEETWIRE_BIN or build it); the static key check above still ran")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWIRE_")}
    env.update(rendered_environment(dirs))
    out = subprocess.run([str(binary), "validate-config", str(ROOT / "config/aws.toml")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    effective = json.loads(out.stdout.split("\n", 1)[1])
    assert effective["kinesis"]["stream_name"] == "fleetwire-dev_V"
    assert effective["dynamodb"]["lease_table"] == "fleetwire-dev-leases"
    assert effective["dynamodb"]["table_prefix"] == "fleetwire-dev-"
    assert effective["http"]["listen"].endswith(":8080") and effective["admin"]["listen"].endswith(":9090")
    assert effective["auth"]["audiences"] == ["example-client-id"]
    assert effective["archive"]["bucket"] == "fleetwire-dev-archive-123456789012"
    assert effective["archive"]["enabled"] and effective["archive"]["backend"] == "s3"
    assert effective["backends"]["api_keys"] == "dynamodb"
    assert effective["vault"]["wrapper"] == "kms"
    assert effective["vault"]["kms"]["key_id"] == "alias/fleetwire-dev-vin-vault"
    assert effective["vault"]["kms"]["region"] == "us-east-1"
    # And a misspelt variable is refused, so the check above means something.
    env["FLEETWIRE_KINESIS__STREAM"] = "x"
    bad = subprocess.run([str(binary), "validate-config", str(ROOT / "config/aws.toml")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


# --- ports, image, command line ----------------------------------------------------------


def toml_port(section: str) -> int:
    aws = tomllib.loads((ROOT / "config/aws.toml").read_text())
    return int(aws[section]["listen"].rsplit(":", 1)[1])


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def port_problems(dirs, docker_text: str) -> list[str]:
    ecs, stack = mod(dirs, "ecs"), dirs["stack"]
    expected = {"api": toml_port("http"), "admin": toml_port("admin"), "tesla": 8443}
    problems = []
    for name, port in expected.items():
        for where in (ecs, stack):
            if default_of(where, f"{name}_port") != port:
                problems.append(f"{where.path.name}: {name}_port default {default_of(where, f'{name}_port')} != {port}")
    mappings = {m["name"]: m["containerPort"] for m in ecs.locals["fleetwire_container"]["portMappings"]}
    if mappings != {n: f"${{var.{n}_port}}" for n in expected}:
        problems.append(f"ecs portMappings {mappings}")
    if ecs.locals["environment"]["FLEETWIRE_HTTP__LISTEN"] != "0.0.0.0:${var.api_port}":
        problems.append("FLEETWIRE_HTTP__LISTEN does not use api_port")
    if ecs.locals["environment"]["FLEETWIRE_ADMIN__LISTEN"] != "0.0.0.0:${var.admin_port}":
        problems.append("FLEETWIRE_ADMIN__LISTEN does not use admin_port")
    if ecs.locals["tesla_environment"]["FLEETWIRE_TESLA__LISTEN"] != "0.0.0.0:${var.tesla_port}":
        problems.append("FLEETWIRE_TESLA__LISTEN does not use tesla_port")
    lbs = {lb["container_port"] for lb in ecs.resources[("aws_ecs_service", "this")]["load_balancer"]}
    if lbs != {"${var.api_port}", "${var.tesla_port}"}:
        problems.append(f"service load balancers on {lbs}")
    wiring = {
        ("vehicle_ingress", "container_port"): "${var.tesla_port}",
        ("vehicle_ingress", "health_check_port"): "${var.admin_port}",
        ("api_ingress", "container_port"): "${var.api_port}",
        ("api_ingress", "health_check_port"): "${var.admin_port}",
    }
    for (module, arg), value in wiring.items():
        if stack.modules[module].get(arg) != value:
            problems.append(f"stack: {module}.{arg} = {stack.modules[module].get(arg)}, expected {value}")
    for module, tg in (("vehicle_ingress", "vehicles"), ("api_ingress", "api")):
        body = mod(dirs, module).resources[("aws_lb_target_group", tg)]
        if body["port"] != "${var.container_port}":
            problems.append(f"{module}: target group port {body['port']}")
        hc = body["health_check"][0]
        if hc["port"] != "${tostring(var.health_check_port)}" or hc["path"] != "/readyz":
            problems.append(f"{module}: health check {hc}")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", docker_text, re.M) for p in line.split()}
    if exposed != set(expected.values()):
        problems.append(f"Dockerfile EXPOSE {sorted(exposed)} != {sorted(expected.values())}")
    return problems


def test_ports_agree_everywhere(dirs):
    assert port_problems(dirs, dockerfile()) == []
    assert mod(dirs, "vehicle_ingress").resources[("aws_lb_listener", "vehicles")]["port"] == 443
    assert mod(dirs, "api_ingress").resources[("aws_lb_listener", "https")]["port"] == 443


def test_port_check_detects_a_mismatch(dirs):
    assert any("EXPOSE" in p for p in port_problems(dirs, dockerfile().replace("EXPOSE 8080", "EXPOSE 8081")))


def test_admin_listener_is_never_routed(dirs):
    """9090 only for health checks: no ALB/NLB listener or target group serves it."""
    for module in ("api_ingress", "vehicle_ingress"):
        tf = mod(dirs, module)
        for (rtype, _), body in tf.resources.items():
            if rtype == "aws_lb_listener":
                assert body["port"] in (80, 443)
    ecs = mod(dirs, "ecs")
    admin_rules = ecs.resources[("aws_vpc_security_group_ingress_rule", "admin_health_checks")]
    assert admin_rules["for_each"] == {"alb": "${var.alb_security_group_id}", "nlb": "${var.nlb_security_group_id}"}


def test_image_runs_serve_with_the_aws_profile(dirs):
    text = dockerfile()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    assert entry == ["/usr/local/bin/fleetwire", "serve", "--config", "/etc/fleetwire/aws.toml"]
    assert "COPY --chmod=0644 config/aws.toml /etc/fleetwire/aws.toml" in text
    cli = (ROOT / "src/cli.rs").read_text()
    # `--config` (repeatable: later files win) is what the entrypoint passes.
    assert re.search(r"Serve \{[^}]*#\[arg\(long\)\]\s*config: (Option|Vec)<PathBuf>", cli, re.S)
    assert re.search(r"#\[arg\(long, global = true[^)]*\)\]\s*pub shutdown_limit_secs", cli)
    ecs = mod(dirs, "ecs")
    assert ecs.locals["fleetwire_container"]["command"] == ["--shutdown-limit-secs", "${tostring(var.shutdown_limit_secs)}"]
    # Non-root, same uid in the image and the task; the health check script is where ECS runs it.
    uid = int(re.search(r"^USER (\d+):(\d+)$", text, re.M).group(1))
    assert uid != 0 and default_of(ecs, "container_uid") == uid
    assert ecs.locals["fleetwire_container"]["user"] == "${var.container_uid}:${var.container_uid}"
    hc = ecs.locals["fleetwire_container"]["healthCheck"]["command"]
    assert hc[1] in text and (ROOT / "docker/healthcheck").is_file()
    assert f"--chmod=0755 docker/healthcheck {hc[1]}" in text
    # The drain fits between SIGTERM and SIGKILL.
    http_timeout = tomllib.loads((ROOT / "config/aws.toml").read_text())["http"]["shutdown_timeout_secs"]
    assert default_of(ecs, "shutdown_limit_secs") + http_timeout < default_of(ecs, "stop_timeout_seconds")


def test_dockerignore_lets_the_build_inputs_through():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    copied = re.findall(r"^COPY (?!--from)(?:--chmod=\d+ )?(\S+(?: \S+)*) \S+$", dockerfile(), re.M)
    sources = [s for line in copied for s in line.split()]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert set(s.rstrip("/") for s in sources) <= allowed, set(sources) - allowed


# --- alarms and runbooks ------------------------------------------------------------------


def alarm_runbooks(dirs) -> dict[str, str]:
    cw = mod(dirs, "cloudwatch")
    out = {}
    for (rtype, name), body in cw.resources.items():
        if rtype == "aws_cloudwatch_metric_alarm":
            m = re.search(r"Runbook: \$\{local\.runbook\}/([\w-]+\.md)", body["alarm_description"])
            assert m, f"alarm {name} names no runbook"
            out[name] = m.group(1)
    return out


def test_every_alarm_has_a_runbook_and_every_runbook_an_alarm(dirs):
    assert mod(dirs, "cloudwatch").locals["runbook"] == "docs/runbooks"
    books = alarm_runbooks(dirs)
    assert set(books) == {"kinesis_iterator_age", "dead_letters_growing", "api_5xx", "dynamodb_throttles",
                          "redis_down", "unhealthy_tasks"}
    for alarm, book in books.items():
        assert book == alarm.replace("_", "-") + ".md"
        text = (RUNBOOKS / book).read_text()
        for heading in ("## What it means", "## Confirm", "## Fix"):
            assert heading in text, f"{book} lacks {heading}"
    assert {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md"} == set(books.values())


def test_iterator_age_alarm_is_30_seconds(dirs):
    cw = mod(dirs, "cloudwatch")
    assert default_of(cw, "iterator_age_threshold_ms") == 30000
    alarm = cw.resources[("aws_cloudwatch_metric_alarm", "kinesis_iterator_age")]
    assert alarm["metric_name"] == "GetRecords.IteratorAgeMilliseconds"


# --- checkov skips ------------------------------------------------------------------------


def skip_problems(files: list[Path]) -> list[str]:
    problems = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if "checkov:skip" not in line:
                continue
            m = re.search(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)$", line)
            if not m or len(m.group(2).strip()) < 40:
                problems.append(f"{f}:{n}: a skip needs a check id and a reason of a sentence")
    return problems


def test_every_checkov_skip_is_justified():
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert skip_problems(files) == []
    assert sum("checkov:skip" in f.read_text() for f in files) >= 1


def test_skip_check_detects_a_bare_skip(tmp_path):
    bare = tmp_path / "bare.tf"
    bare.write_text('resource "a" "b" {\n  #checkov:skip=CKV_AWS_18\n}\n')
    short = tmp_path / "short.tf"
    short.write_text('resource "a" "b" {\n  #checkov:skip=CKV_AWS_18:not needed\n}\n')
    assert len(skip_problems([bare, short])) == 2


# --- production posture ---------------------------------------------------------------------


def test_prod_keeps_redis_tls_and_deletion_protection(dirs):
    prod = dirs["environments/prod"].modules["fleetwire"]
    assert prod["redis_tls"] is True and prod["deletion_protection"] is True
    assert default_of(dirs["stack"], "redis_tls") is True
    assert default_of(mod(dirs, "redis"), "transit_encryption") is True
