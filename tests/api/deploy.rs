//! The deployment kit of deploy/: the systemd unit passes `systemd-analyze verify` without
//! a warning, and the environment file names only settings nextup documents.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_systemd_unit_verifies_without_a_warning() {
    let unit = std::fs::read_to_string(repo().join("deploy/nextup.service")).unwrap();
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let installed = "ExecStart=/usr/local/bin/nextup serve";
    assert!(unit.contains(installed), "the unit starts {installed}");
    let unit = unit.replace(
        installed,
        &format!("ExecStart={} serve", crate::cli::nextup_binary().display()),
    );
    let dir = std::env::temp_dir().join(format!("nextup-unit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nextup.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (apt-get install systemd; .ci/run installs it)");
    std::fs::remove_dir_all(&dir).unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    // Unknown keys and bad values are only warnings to verify: none is allowed.
    let about_the_unit: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("nextup.service"))
        .collect();
    assert!(about_the_unit.is_empty(), "{about_the_unit:#?}");
}

#[test]
fn the_environment_file_sets_only_documented_settings() {
    let env = std::fs::read_to_string(repo().join("deploy/nextup.env")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let names: Vec<&str> = env
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} is not in README.md's configuration table"
        );
    }
}
