//! `actors/proto/tesla/*.proto` against the schema facts in `shared/fixtures/tesla/schema/`:
//! every package, message, field (name, JSON name, number, type, label, oneof) and enum
//! value must match, both ways, so drift from Tesla's schema is caught.

use std::path::{Path, PathBuf};

use fleetwire_actors::tesla::descriptor_pool;
use prost_reflect::{Kind, MessageDescriptor};
use serde_json::Value;

fn schema_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FLEETWIRE_TESLA_FIXTURES") {
        return PathBuf::from(dir).join("schema");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures/tesla/schema"))
        .find(|d| d.is_dir())
        .expect("shared/fixtures/tesla/schema not found beside the repository")
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn check_message(desc: &MessageDescriptor, facts: &Value) {
    let fields = facts["fields"].as_array().unwrap();
    assert_eq!(
        desc.fields().count(),
        fields.len(),
        "{}: field count",
        desc.full_name()
    );
    for f in fields {
        let name = f["name"].as_str().unwrap();
        let field = desc
            .get_field_by_name(name)
            .unwrap_or_else(|| panic!("{}.{name} missing", desc.full_name()));
        let what = field.full_name().to_string();
        assert_eq!(
            u64::from(field.number()),
            f["number"].as_u64().unwrap(),
            "{what}: number"
        );
        assert_eq!(
            field.json_name(),
            f["json_name"].as_str().unwrap(),
            "{what}: json name"
        );
        let want_kind = match f["type"].as_str().unwrap() {
            t @ ("message" | "enum") => format!("{t} {}", f["type_name"].as_str().unwrap()),
            scalar => scalar.to_owned(),
        };
        assert_eq!(kind_name(&field.kind()), want_kind, "{what}: type");
        let repeated = f["label"] == "repeated";
        assert_eq!(field.is_list() || field.is_map(), repeated, "{what}: label");
        assert_eq!(
            field.containing_oneof().map(|o| o.name().to_owned()),
            f["oneof"].as_str().map(str::to_owned),
            "{what}: oneof"
        );
    }
    for nested in facts["messages"].as_array().into_iter().flatten() {
        let name = format!("{}.{}", desc.full_name(), nested["name"].as_str().unwrap());
        let nested_desc = descriptor_pool()
            .get_message_by_name(&name)
            .unwrap_or_else(|| panic!("{name} missing"));
        check_message(&nested_desc, nested);
    }
}

#[test]
fn proto_files_match_teslas_schema_facts() {
    let mut files = 0;
    for entry in std::fs::read_dir(schema_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let facts: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file_name = facts["file"].as_str().unwrap();
        let package = facts["package"].as_str().unwrap();
        let file = descriptor_pool()
            .files()
            .find(|f| f.name() == file_name)
            .unwrap_or_else(|| panic!("{file_name} is not compiled"));
        assert_eq!(file.package_name(), package, "{file_name}: package");
        assert_eq!(
            format!("{:?}", file.syntax()).to_lowercase(),
            facts["syntax"].as_str().unwrap(),
            "{file_name}"
        );

        let enums = facts["enums"].as_array().unwrap();
        assert_eq!(file.enums().count(), enums.len(), "{file_name}: enum count");
        for e in enums {
            let name = format!("{package}.{}", e["name"].as_str().unwrap());
            let desc = descriptor_pool()
                .get_enum_by_name(&name)
                .unwrap_or_else(|| panic!("{name} missing"));
            let got: Vec<(String, i32)> = desc.values().map(|v| (v.name().to_owned(), v.number())).collect();
            let want: Vec<(String, i32)> = e["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap().to_owned(),
                        v["number"].as_i64().unwrap() as i32,
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}: values");
        }

        let messages = facts["messages"].as_array().unwrap();
        assert_eq!(
            file.messages().count(),
            messages.len(),
            "{file_name}: message count"
        );
        for m in messages {
            let name = format!("{package}.{}", m["name"].as_str().unwrap());
            let desc = descriptor_pool()
                .get_message_by_name(&name)
                .unwrap_or_else(|| panic!("{name} missing"));
            check_message(&desc, m);
        }
    }
    assert_eq!(files, 5);
}
