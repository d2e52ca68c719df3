// Compiles the engine's own dlib shim (src/dlib/shim.rs). CXXFLAGS (see .cargo/config.toml)
// decide the instruction set; the dlib headers are Debian's (libdlib-dev).
fn main() {
    println!("cargo:rerun-if-changed=src/dlib/shim.rs");
    println!("cargo:rerun-if-env-changed=CXXFLAGS");
    cpp_build::Config::new().flag("-std=c++14").flag("-O3").flag("-Wno-deprecated-copy").build("src/lib.rs");
}
