//! Test support: run a test body with a directory on a tiny tmpfs, to see what
//! the code does when the disk is full, without filling a real disk.
//!
//! The test re-executes its own test binary, filtered to itself, inside a new
//! user + mount namespace (`unshare -rm`) where a tmpfs of the given size is
//! mounted on a fresh directory; the body runs there. The body may grow the
//! tmpfs (`mount -o remount,size=...`) to model space coming back. When the
//! namespace cannot be made, the test is skipped with a message, except under
//! `CI`, where that is a failure.

use std::path::Path;
use std::process::Command;

const DIR_ENV: &str = "ENDOTOWER_TINY_FS_DIR";
const RAN: &str = "tiny-fs body ran";

/// Run `body` on a `size_kib` tmpfs. `test` is the test's full name
/// (`module::tests::name`), used to re-run only this test in the namespace.
pub fn on_tiny_fs(test: &str, size_kib: u32, body: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        body(Path::new(&dir));
        println!("{RAN}: {test}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("endotower-tinyfs-{}-{}", std::process::id(), test.replace("::", "-")));
    std::fs::create_dir_all(&dir).expect("create mount point");
    let exe = std::env::current_exe().expect("current test binary");
    let script = format!("mount -t tmpfs -o size={size_kib}k endotower-test \"$1\" || exit 97; shift; exec \"$@\"");
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script, "sh"])
        .arg(&dir)
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, &dir)
        .output();
    let _ = std::fs::remove_dir(&dir);
    let out = match out {
        Ok(o) if o.status.code() == Some(97) || (!o.status.success() && o.stdout.is_empty()) => {
            return unavailable(&dir, &String::from_utf8_lossy(&o.stderr));
        }
        Ok(o) => o,
        Err(e) => return unavailable(&dir, &e.to_string()),
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the test failed on the tiny tmpfs:\n{stdout}\n{stderr}");
    assert!(stdout.contains(RAN), "the body did not run (is {test:?} the test's full name?):\n{stdout}");
}

fn unavailable(dir: &Path, why: &str) {
    let msg = format!("cannot mount a tmpfs on {} in a user+mount namespace (unshare -rm): {why}", dir.display());
    assert!(std::env::var_os("CI").is_none(), "{msg}; CI must run the disk-full tests");
    eprintln!("skipping disk-full test: {msg}");
}
