//! Any bytes as a vehicle's WebSocket frame: `process_frame` (and the readers the decode
//! tool uses) must never panic, and what it dispatches must convert downstream.
#![no_main]

use fleetwire_actors::model::VehicleId;
use fleetwire_actors::tesla::{
    FrameContext, Topic, Verdict, describe_frame, payload_to_json, process_frame, read_envelope,
    vehicle_data_to_record,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let ctx = FrameContext {
        vin: "5YJ3E1EA7RF261422",
        vehicle_id: "veh-1",
        topics: &Topic::ALL,
    };
    let _ = read_envelope(frame);
    let _ = describe_frame(frame);
    match process_frame(frame, &ctx) {
        Verdict::Dispatch(record) => {
            if record.topic == Topic::V {
                let received = chrono::DateTime::UNIX_EPOCH;
                vehicle_data_to_record(&record.payload, VehicleId("veh-1".into()), received)
                    .expect("a dispatched V payload converts");
            }
            let _ = payload_to_json(record.topic, &record.payload);
        }
        Verdict::Reply { replies, .. } => {
            for reply in replies {
                read_envelope(&reply).expect("replies read back");
            }
        }
    }
});
