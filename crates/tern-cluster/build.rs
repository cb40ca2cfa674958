//! Compiles proto/raft.proto and proto/peer.proto with a vendored protoc, so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc);
    }
    let include = protoc_bin_vendored::include_path()?;
    println!("cargo:rerun-if-changed=../../proto/raft.proto");
    println!("cargo:rerun-if-changed=../../proto/peer.proto");
    tonic_prost_build::configure().bytes(".").compile_protos(
        &["../../proto/raft.proto", "../../proto/peer.proto"],
        &["../../proto", include.to_str().unwrap_or(".")],
    )?;
    Ok(())
}
