//! Compiles `herald/v1/*.proto` with `protox` (pure Rust, no system `protoc`)
//! and generates prost messages plus tonic client and server stubs.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "herald/v1/delivery.proto",
    "herald/v1/outcome.proto",
    "herald/v1/delivery_service.proto",
    "herald/v1/destination.proto",
    "herald/v1/destination_service.proto",
    "herald/v1/audit_service.proto",
    "herald/v1/endpoint.proto",
    "herald/v1/endpoint_service.proto",
    "herald/v1/event_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let fds = protox::compile(PROTOS, [&root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("herald_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        // google/rpc/status.proto (imported, kept beside the contract) is
        // tonic-types' `Status`, which reads its details.
        .extern_path(".google.rpc.Status", "::tonic_types::Status")
        .compile_fds(fds)?;
    Ok(())
}
