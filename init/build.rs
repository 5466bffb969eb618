//! Link settings for the init binary.

fn main() {
    // The static-pie init packs its relative relocations (DT_RELR, which
    // musl's start code applies): 32 KB smaller than RELA entries, and the
    // binary keeps its random load address.
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
