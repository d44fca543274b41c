//! Generates the Open Inference Protocol (KServe v2) gRPC client from
//! `proto/grpc_predict_v2.proto`. The .proto is compiled by protox (a
//! protobuf compiler in Rust), so no `protoc` is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/grpc_predict_v2.proto");
    let fds = protox::compile(["grpc_predict_v2.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(false).build_transport(false).compile_fds(fds)?;
    Ok(())
}
