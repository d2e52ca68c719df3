// Generates the Rust code and a file descriptor set (for server reflection) from
// lookalike/v1/*.proto. Needs `protoc` (Debian: protobuf-compiler; scripts/setup.sh installs it).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("lookalike_descriptor.bin"))
        // Every proto `bytes` field (photos, chips, thumbnails) is a `bytes::Bytes`: a photo
        // is shared, not copied, per hop and per retry.
        .bytes(".")
        .compile_protos(&["lookalike/v1/matcher.proto"], &["."])?;
    println!("cargo:rerun-if-changed=lookalike/v1/matcher.proto");
    Ok(())
}
