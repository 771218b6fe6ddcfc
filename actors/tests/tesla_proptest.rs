//! Property tests: no input makes the Tesla codec panic, and whatever it dispatches, the
//! pipeline can decode.

use std::path::Path;

use chrono::Utc;
use fleetwire_actors::model::VehicleId;
use fleetwire_actors::tesla::{
    DataFrame, FrameContext, FrameRejection, MAX_FRAME_BYTES, Topic, Verdict, data_frame, describe_frame,
    payload_to_json, process_frame, read_envelope, vehicle_data_to_record,
};
use proptest::prelude::*;

const VIN: &str = "5YJ3E1EA7RF261422";

fn ctx() -> FrameContext<'static> {
    FrameContext {
        vin: VIN,
        vehicle_id: "veh-1",
        topics: &Topic::ALL,
    }
}

/// Everything the codec offers, on one input; checks what must hold for any input.
fn exercise(frame: &[u8]) {
    let _ = read_envelope(frame);
    let _ = describe_frame(frame);
    match process_frame(frame, &ctx()) {
        Verdict::Dispatch(record) => {
            // Dispatched records are always decodable downstream.
            if record.topic == Topic::V {
                vehicle_data_to_record(&record.payload, VehicleId("veh-1".into()), Utc::now())
                    .expect("a dispatched V payload converts");
                assert_ne!(record.payload.first(), Some(&b'{'));
            }
            let _ = payload_to_json(record.topic, &record.payload);
        }
        Verdict::Reply { replies, .. } => {
            assert!(!replies.is_empty());
            for reply in replies {
                read_envelope(&reply).expect("our replies always read back");
            }
        }
    }
}

/// The data fixture frames (mutation seeds).
fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures/tesla"))
        .find(|d| d.join("cases.json").is_file())
        .expect("shared/fixtures/tesla beside the repository");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin") && p.metadata().unwrap().len() < 4096)
        .map(|p| std::fs::read(p).unwrap())
        .filter(|b| !b.is_empty())
        .collect();
    seeds.sort();
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&frame);
    }

    #[test]
    fn mutated_fixture_frames_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let seeds = seeds();
        let mut frame = seeds[seed.index(seeds.len())].clone();
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if truncate {
            frame.truncate(cut.index(frame.len()));
        }
        exercise(&frame);
    }

    #[test]
    fn arbitrary_payloads_in_valid_frames_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        topic in prop::sample::select(Topic::ALL.to_vec()),
    ) {
        let frame = data_frame(&DataFrame { txid: b"t", topic, message_id: b"m", created_at: 0, vin: VIN, payload: &payload });
        exercise(&frame);
    }

    #[test]
    fn protobuf_shaped_payloads_never_panic(
        fields in proptest::collection::vec((1u8..40, 0u8..8, proptest::collection::vec(any::<u8>(), 0..24)), 0..12),
    ) {
        // Tags of plausible fields followed by plausible bodies: reaches deeper than random bytes.
        let mut payload = Vec::new();
        for (number, wire_type, body) in fields {
            payload.push((number << 3) | wire_type);
            if wire_type == 2 {
                payload.push(body.len() as u8);
            }
            payload.extend_from_slice(&body);
        }
        let frame = data_frame(&DataFrame { txid: b"t", topic: Topic::V, message_id: b"m", created_at: 0, vin: VIN, payload: &payload });
        exercise(&frame);
    }

    #[test]
    fn oversize_frames_are_refused_before_decoding(extra in 1usize..4096, fill in any::<u8>()) {
        let frame = vec![fill; MAX_FRAME_BYTES + extra];
        let Verdict::Reply { rejection, .. } = process_frame(&frame, &ctx()) else { panic!("dispatched") };
        prop_assert_eq!(rejection, FrameRejection::TooLarge { len: MAX_FRAME_BYTES + extra });
        let too_large = matches!(read_envelope(&frame), Err(FrameRejection::TooLarge { .. }));
        prop_assert!(too_large, "read_envelope refuses oversize frames");
    }
}
