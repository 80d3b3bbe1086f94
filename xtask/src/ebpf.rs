//! `cargo xtask ebpf`: rebuild gen's eBPF object from `generator-ebpf/bpf/*.bpf.c` with
//! Debian's clang (installed when missing: clang, llvm, libbpf-dev) and record the hash of
//! its sources beside it. The object is committed so `cargo build` needs no clang; the test
//! `object_is_built_from_these_sources` in generator-ebpf (run by `cargo xtask ci`) fails
//! when a source changed and this was not run.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

#[path = "../../generator-ebpf/src/hash.rs"]
mod hash;

/// Source and object names under `generator-ebpf/bpf/`.
const SOURCE: &str = "gen_probes.bpf.c";
const OBJECT: &str = "gen_probes.bpf.o";
/// The same source built with `-DGEN_RINGBUF`: the ring-buffer transport, kept to measure
/// against (docs/probes.md, "Why in-kernel histograms").
const RINGBUF_OBJECT: &str = "gen_probes_ringbuf.bpf.o";

fn bpf_dir() -> Result<PathBuf> {
    Ok(PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .join("generator-ebpf/bpf"))
}

pub fn main(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("unknown ebpf argument {a:?} (it takes none)");
    }
    let dir = bpf_dir()?;
    install_toolchain()?;
    for (object, defines) in [(OBJECT, &[][..]), (RINGBUF_OBJECT, &["-DGEN_RINGBUF"][..])] {
        let obj = dir.join(object);
        let tmp = dir.join(format!("{object}.tmp"));
        // Run in bpf/ with relative names: the object's BTF line info then holds no checkout
        // path.
        run(Command::new("clang")
            .current_dir(&dir)
            .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
            .args(defines)
            // uapi headers (linux/bpf.h, asm/ptrace.h) from linux-libc-dev
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg(format!("-fdebug-prefix-map={}=.", dir.display()))
            .args(["-c", SOURCE, "-o"])
            .arg(&tmp))?;
        // Debug line info is not needed at run time; .BTF and .BTF.ext (maps, CO-RE) stay.
        run(Command::new("llvm-strip").arg("-g").arg(&tmp))?;
        std::fs::rename(&tmp, &obj).with_context(|| format!("writing {}", obj.display()))?;
        let size = std::fs::metadata(&obj)?.len();
        println!("xtask ebpf: wrote {} ({size} bytes)", obj.display());
    }
    let parts: Vec<(String, Vec<u8>)> = hash::SOURCE_FILES
        .iter()
        .map(|n| {
            std::fs::read(dir.join(n))
                .with_context(|| format!("reading {n}"))
                .map(|b| (n.to_string(), b))
        })
        .collect::<Result<_>>()?;
    let refs: Vec<(&str, &[u8])> = parts
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let h = hash::source_hash(&refs);
    std::fs::write(dir.join(format!("{OBJECT}.hash")), format!("{h}\n"))?;
    println!("xtask ebpf: source hash {h} (both objects)");
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// clang, llvm-strip and the libbpf headers, from Debian, when missing.
fn install_toolchain() -> Result<()> {
    let have = crate::proc::on_path("clang")
        && crate::proc::on_path("llvm-strip")
        && std::path::Path::new("/usr/include/bpf/bpf_helpers.h").is_file();
    if have {
        return Ok(());
    }
    println!("xtask ebpf: installing clang llvm libbpf-dev");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(["clang", "llvm", "libbpf-dev", "linux-libc-dev"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?
        .success();
    if !ok {
        bail!("could not install clang llvm libbpf-dev (try apt-get update first)");
    }
    Ok(())
}
