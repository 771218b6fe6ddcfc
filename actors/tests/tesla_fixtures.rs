//! Every case of `shared/fixtures/tesla/cases.json` through the codec: decoding, the
//! server's decision (`process_frame`), the record it dispatches and the replies it sends.

use std::path::{Path, PathBuf};

use fleetwire_actors::model::VehicleId;
use fleetwire_actors::tesla::{
    FrameContext, FrameRejection, MAX_FRAME_BYTES, Topic, Verdict, ack, describe_frame, payload_to_json,
    process_frame, read_envelope, vehicle_data_to_record,
};
use serde_json::Value;

/// `shared/` sits beside the repository (CI clones it so; worktrees sit deeper), so look in
/// every ancestor; `FLEETWIRE_TESLA_FIXTURES` overrides.
fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FLEETWIRE_TESLA_FIXTURES") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/fixtures/tesla"))
        .find(|d| d.join("cases.json").is_file())
        .expect("shared/fixtures/tesla not found beside the repository (set FLEETWIRE_TESLA_FIXTURES)")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures_dir().join("cases.json")).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn frame_of(case: &Value) -> Vec<u8> {
    let bytes = std::fs::read(fixtures_dir().join(case["file"].as_str().unwrap())).unwrap();
    assert_eq!(bytes.len() as u64, case["bytes"].as_u64().unwrap());
    bytes
}

/// A stand-in pseudonym, different from the VIN.
fn pseudonym(vin: &str) -> String {
    format!("veh-{}", &vin[vin.len() - 6..])
}

/// JSON equality with a relative tolerance of 1e-6 on non-integer numbers (float fields
/// are 32-bit).
fn assert_json_eq(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) if !(g.is_i64() && w.is_i64()) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-12), "{path}: {g} != {w}");
        }
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<_> = g.keys().collect();
            let mut wk: Vec<_> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "{path}: keys");
            for (k, v) in w {
                assert_json_eq(&g[k], v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: length");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_json_eq(g, w, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

/// An envelope as the fixtures describe replies and acks.
fn reply_json(bytes: &[u8]) -> Value {
    let env = read_envelope(bytes).unwrap();
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let mut v = serde_json::json!({
        "message_type": env.message_type,
        "txid": text(&env.txid),
        "topic": text(&env.topic),
    });
    match env.stream {
        Some(s) => v["payload"] = Value::String(text(&s.payload)),
        None => v["message_id"] = Value::String(text(&env.message_id)),
    }
    v
}

/// Reads an ack with plain byte arithmetic, independently of the codec, and checks the
/// README's "Ack layout": slot 0 txid, slot 1 topic, slot 2 = 5, slot 3 → an empty byte
/// vector, slot 4 an empty byte vector.
fn check_ack_layout(bytes: &[u8], txid: &[u8], topic: &[u8]) {
    let u32_at = |p: usize| u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
    let u16_at = |p: usize| u16::from_le_bytes(bytes[p..p + 2].try_into().unwrap()) as usize;
    let table = u32_at(0);
    let vtable =
        (table as i64 - i32::from_le_bytes(bytes[table..table + 4].try_into().unwrap()) as i64) as usize;
    let slot = |n: usize| {
        let off = u16_at(vtable + 4 + 2 * n);
        assert!(off > 0 && 4 + 2 * n < u16_at(vtable), "slot {n} present");
        table + off
    };
    let vector = |n: usize| {
        let at = slot(n);
        let start = at + u32_at(at);
        &bytes[start + 4..start + 4 + u32_at(start)]
    };
    assert_eq!(vector(0), txid);
    assert_eq!(vector(1), topic);
    assert_eq!(bytes[slot(2)], 5);
    assert_eq!(vector(3), b"", "the union value is an empty byte vector");
    assert_eq!(vector(4), b"", "message id left empty");
}

#[test]
fn data_cases_decode_dispatch_and_ack_like_tesla() {
    let cases = cases();
    let mut seen = 0;
    for case in cases.iter().filter(|c| c["kind"] == "data") {
        seen += 1;
        let name = case["file"].as_str().unwrap();
        let frame = frame_of(case);
        let topic: Topic = case["topic"].as_str().unwrap().parse().unwrap();

        // Decoder.
        let env = read_envelope(&frame).unwrap();
        assert_eq!(env.txid, case["txid"].as_str().unwrap().as_bytes(), "{name}");
        assert_eq!(env.topic, topic.as_str().as_bytes(), "{name}");
        assert_eq!(
            env.message_id,
            case["message_id"].as_str().unwrap().as_bytes(),
            "{name}"
        );
        let payload = env.stream.as_ref().unwrap().payload.clone();
        assert_json_eq(&payload_to_json(topic, &payload).unwrap(), &case["expect"], name);
        let described = describe_frame(&frame).unwrap();
        assert_json_eq(&described["payload"], &case["expect"], name);

        // Server: the record that reaches the stream and the ack.
        let vin = case["device_vin"].as_str().unwrap();
        let vehicle_id = pseudonym(vin);
        let ctx = FrameContext {
            vin,
            vehicle_id: &vehicle_id,
            topics: &Topic::ALL,
        };
        let Verdict::Dispatch(record) = process_frame(&frame, &ctx) else {
            panic!("{name}: expected a record, got {:?}", process_frame(&frame, &ctx));
        };
        assert_eq!(record.topic, topic, "{name}");
        assert_eq!(record.partition_key, vehicle_id, "{name}");
        assert_eq!(record.txid, env.txid, "{name}");
        assert_eq!(record.message_id, env.message_id, "{name}");
        let mut expect_record = case["expect_record"].clone();
        expect_record["vin"] = Value::String(vehicle_id.clone());
        assert_json_eq(
            &payload_to_json(topic, &record.payload).unwrap(),
            &expect_record,
            name,
        );
        assert!(
            !record.payload.windows(vin.len()).any(|w| w == vin.as_bytes()),
            "{name}: clear VIN left"
        );

        let ack_bytes = ack(&record.txid, record.topic.as_str().as_bytes());
        assert_eq!(ack_bytes, record.ack());
        assert_json_eq(&reply_json(&ack_bytes), &case["expect_ack"], name);
        check_ack_layout(&ack_bytes, &record.txid, topic.as_str().as_bytes());

        // The record's timestamp and size as the server reports them.
        let created = case["expect_record"]["createdAt"]
            .as_str()
            .map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
        assert_eq!(record.created_at, created, "{name}");
        let entries = ["data", "alerts", "errors"]
            .iter()
            .find_map(|k| case["expect_record"][k].as_array().map(Vec::len))
            .unwrap_or(0);
        assert_eq!(record.datums, entries, "{name}");

        if topic == Topic::V {
            let received = "2030-01-01T00:00:00Z".parse().unwrap();
            let rec =
                vehicle_data_to_record(&record.payload, VehicleId(vehicle_id.clone()), received).unwrap();
            assert_eq!(rec.payload.len(), entries.min(rec.payload.len()), "{name}");
            assert_eq!(rec.timestamp, created.unwrap_or(received), "{name}");
        }
    }
    assert_eq!(seen, 29);
}

#[test]
fn bad_cases_get_teslas_replies_and_no_record() {
    let mut seen = 0;
    for case in cases().iter().filter(|c| c["kind"] == "bad") {
        seen += 1;
        let name = case["file"].as_str().unwrap();
        let frame = frame_of(case);
        let vin = case["device_vin"].as_str().unwrap();
        let vehicle_id = pseudonym(vin);
        let ctx = FrameContext {
            vin,
            vehicle_id: &vehicle_id,
            topics: &Topic::ALL,
        };
        let Verdict::Reply { replies, rejection } = process_frame(&frame, &ctx) else {
            panic!("{name}: must not dispatch");
        };
        // Tesla's doubled acks are sent once.
        let mut expected: Vec<Value> = case["expect_response"].as_array().unwrap().clone();
        expected.dedup();
        assert_eq!(replies.len(), expected.len(), "{name}");
        for (got, want) in replies.iter().zip(&expected) {
            assert_json_eq(&reply_json(got), want, name);
        }

        let expect_error = case["expect_error"].as_str().unwrap();
        let reason = match expect_error {
            e if e.starts_with("empty") => "empty",
            e if e.contains("FlatBuffers envelope") => "not_flatbuffers",
            e if e.starts_with("message_type") => "unexpected_message_type",
            e if e.starts_with("payload is not") => "bad_payload",
            e if e.starts_with("unknown topic") => "unknown_topic",
            e if e.contains("larger than 1,000,000") => "too_large",
            other => panic!("{name}: unmapped expect_error {other:?}"),
        };
        assert_eq!(rejection.reason(), reason, "{name}: {rejection}");

        // The decode tool refuses them too (a vehicle's ack is shown as what it is).
        match describe_frame(&frame) {
            Ok(d) => assert_eq!(
                (reason, d["message_type"].as_u64()),
                ("unexpected_message_type", Some(5)),
                "{name}"
            ),
            Err(e) => assert_eq!(e.reason(), reason, "{name}"),
        }
    }
    assert_eq!(seen, 8);
}

#[test]
fn oversize_frames_are_refused_before_decoding() {
    let frame = vec![0xffu8; MAX_FRAME_BYTES + 1];
    let ctx = FrameContext {
        vin: "V",
        vehicle_id: "v",
        topics: &Topic::ALL,
    };
    let Verdict::Reply { rejection, .. } = process_frame(&frame, &ctx) else {
        panic!()
    };
    assert_eq!(
        rejection,
        FrameRejection::TooLarge {
            len: MAX_FRAME_BYTES + 1
        }
    );
    // Exactly the limit is decoded (and here refused as garbage).
    let Verdict::Reply { rejection, .. } = process_frame(&frame[..MAX_FRAME_BYTES], &ctx) else {
        panic!()
    };
    assert_eq!(rejection.reason(), "not_flatbuffers");
}

#[test]
fn topics_not_dispatched_are_acked_for_the_right_sender_only() {
    let case = cases()
        .into_iter()
        .find(|c| c["file"] == "26_alerts_active.bin")
        .unwrap();
    let frame = frame_of(&case);
    let vin = case["device_vin"].as_str().unwrap();
    let ctx = FrameContext {
        vin,
        vehicle_id: "veh",
        topics: &[Topic::V],
    };
    let Verdict::Reply { replies, rejection } = process_frame(&frame, &ctx) else {
        panic!()
    };
    assert_eq!(rejection.reason(), "unknown_topic");
    assert_eq!(reply_json(&replies[0])["topic"], "alerts");
    let other = FrameContext {
        vin: "5YJ3E1EA8PF421868",
        vehicle_id: "veh",
        topics: &[Topic::V],
    };
    let Verdict::Reply { replies, rejection } = process_frame(&frame, &other) else {
        panic!()
    };
    assert_eq!(rejection.reason(), "sender_mismatch");
    assert_eq!(reply_json(&replies[0])["payload"], "incorrect message format");
}
