//! Generates the gRPC code from the project's own `.proto` files (the same files the Python test
//! suite compiles), with the `protoc` binary vendored by `protoc-bin-vendored`, so a build needs
//! nothing installed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    let include = include
        .to_str()
        .ok_or("the vendored include path is not UTF-8")?;
    let files = [
        "proto/eigenlayer/hourglass/v1/common.proto",
        "proto/eigenlayer/hourglass/v1/executor.proto",
        "proto/eigenlayer/hourglass/v1/performer.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&files, &["proto", include])?;
    Ok(())
}
