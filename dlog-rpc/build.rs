//! Compiles proto/internal.proto with protox (a protobuf compiler in Rust), so building
//! DLog needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/internal.proto");
    let descriptors = protox::compile(["proto/internal.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // payloads stay `Bytes`: no copy between the socket and the channel owner
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
