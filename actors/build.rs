//! Compiles Tesla Fleet Telemetry's payload schema (`proto/tesla/*.proto`, the project's own
//! files) with protox, a pure-Rust protobuf compiler, so no `protoc` is needed anywhere.
//! Writes the prost types (one file per package) and the encoded file descriptor set, which
//! `prost-reflect` needs to print protobuf canonical JSON, to `OUT_DIR`.

use std::path::PathBuf;

const PROTOS: [&str; 5] = [
    "proto/tesla/vehicle_data.proto",
    "proto/tesla/vehicle_alert.proto",
    "proto/tesla/vehicle_error.proto",
    "proto/tesla/vehicle_connectivity.proto",
    "proto/tesla/vehicle_metric.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut compiler = protox::Compiler::new(["proto/tesla"])?;
    compiler.include_imports(true).include_source_info(false);
    for proto in PROTOS {
        compiler.open_file(proto.trim_start_matches("proto/tesla/"))?;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tesla_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    prost_build::Config::new().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
