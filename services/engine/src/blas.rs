//! Which OpenBLAS kernel runs the ResNet, and making it the best the CPU supports.
//!
//! OpenBLAS (a dynamic-architecture build, as Debian ships) picks its kernels once, when the
//! library loads, before `main`, from the CPU's model number. Debian 12's 0.3.21 does not
//! know recent Xeons (e.g. Sapphire Rapids) and falls back to its `Prescott` (SSE3)
//! kernels, which made the encoder ~35% slower on such nodes (docs/BENCHMARKS.md). The
//! variable `OPENBLAS_CORETYPE` overrides the choice, but only at load time: so a binary
//! that finds itself on a fallback kernel re-executes itself with the variable set to the
//! best kernel its CPU's features allow ([`reexec_with_best_kernel`]). An operator's own
//! `OPENBLAS_CORETYPE` is always left alone.

use std::ffi::CStr;
use std::os::raw::c_char;

extern "C" {
    // Both are exported by every OpenBLAS since 0.2; they return static strings.
    fn openblas_get_corename() -> *const c_char;
    fn openblas_get_config() -> *const c_char;
}

/// The variable OpenBLAS reads at load time.
pub const CORETYPE_VAR: &str = "OPENBLAS_CORETYPE";

/// The kernel OpenBLAS loaded, as it names it (e.g. "Haswell", "SkylakeX", "Prescott").
pub fn kernel() -> String {
    // SAFETY: openblas_get_corename takes no arguments and returns a pointer to a static,
    // NUL-terminated string owned by the library (never freed, never null in any release).
    let p = unsafe { openblas_get_corename() };
    if p.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-null and NUL-terminated, as above; it lives as long as the process.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().trim().to_string()
}

/// OpenBLAS's build configuration line (version, DYNAMIC_ARCH, threading), for logs.
pub fn config() -> String {
    // SAFETY: as for openblas_get_corename: a static NUL-terminated string.
    let p = unsafe { openblas_get_config() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated, static.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().trim().to_string()
}

/// Kernels that use at least AVX2 + FMA: nothing to gain by switching away from them.
const MODERN: [&str; 6] = ["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "neoversen1"];

/// The best kernel this CPU's features allow that Debian 12's OpenBLAS has, if better
/// than SSE: `SkylakeX` (AVX-512 F/CD/BW/DQ/VL) or `Haswell` (AVX2 + FMA).
pub fn best_for_this_cpu() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512cd")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl");
        if avx512 {
            return Some("SkylakeX");
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some("Haswell");
        }
    }
    None
}

/// What to do about the kernel at start-up: `Some(kernel)` when the loaded kernel is an old
/// fallback, the operator did not choose one, and this CPU can run a better one.
pub fn better_kernel(loaded: &str, operator_choice: Option<&str>) -> Option<&'static str> {
    if operator_choice.is_some_and(|v| !v.trim().is_empty()) {
        return None;
    }
    if MODERN.contains(&loaded.to_ascii_lowercase().as_str()) {
        return None;
    }
    best_for_this_cpu()
}

/// If OpenBLAS loaded an old fallback kernel although this CPU can run a better one (and
/// `OPENBLAS_CORETYPE` is not set), re-executes the current program with the variable set.
/// Call first thing in `main`, before any thread starts. Returns only when no re-exec was
/// needed (`None`) or it failed (the error; the program then carries on with the kernel it
/// has).
pub fn reexec_with_best_kernel() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt;
    let choice = std::env::var(CORETYPE_VAR).ok();
    let better = better_kernel(&kernel(), choice.as_deref())?;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Some(e),
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    // `exec` only returns on failure.
    Some(cmd.args(args).env(CORETYPE_VAR, better).exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_choice_or_a_modern_kernel_is_left_alone() {
        assert_eq!(better_kernel("Prescott", Some("Sandybridge")), None);
        assert_eq!(better_kernel("Haswell", None), None);
        assert_eq!(better_kernel("SKYLAKEX", None), None);
        // A fallback kernel is replaced by what the CPU allows (this CI machine's CPU has
        // AVX2 at least: the binaries are built for x86-64-v3).
        assert_eq!(better_kernel("Prescott", None), best_for_this_cpu());
        assert_eq!(better_kernel("Prescott", Some("  ")), best_for_this_cpu());
    }

    #[test]
    fn the_loaded_kernel_has_a_name() {
        let k = kernel();
        assert!(!k.is_empty() && k != "unknown", "{k:?}");
        assert!(config().contains("OpenBLAS"), "{}", config());
    }
}
