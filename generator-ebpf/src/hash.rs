//! The recorded source hash that ties the committed object to its sources. Also compiled
//! into xtask (`#[path]`), which writes the hash when it rebuilds the object, so both sides
//! use one definition without xtask depending on the object it is about to build.

/// The files under `bpf/` the object is built from, in hashing order.
pub const SOURCE_FILES: [&str; 2] = ["gen_probes.bpf.c", "gen_vmlinux.h"];

/// FNV-1a (64 bit) over (name, contents) pairs, as hex: detects a source changed without
/// its object being rebuilt. Not a security measure.
pub fn source_hash(parts: &[(&str, &[u8])]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in parts {
        for &b in name
            .as_bytes()
            .iter()
            .chain([0u8].iter())
            .chain(bytes.iter())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
