//! `serve`'s one layered configuration, through the real binary: flags over
//! environment over the config file over defaults; unknown keys refused by
//! name; `--print-config` masks secrets.

use std::process::{Command, Output};

fn print_config(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("taskhost.toml");
    std::fs::write(&path, file).expect("write");
    let mut cmd = Command::new(taskhost_tests::taskhost_bin());
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--print-config");
    cmd.args(flags);
    for var in [
        "TASKHOST_WORKERS",
        "TASKHOST_LEASE",
        "TASKHOST_JWT_SECRET",
        "TASKHOST_STORE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run taskhost serve --print-config")
}

fn value(output: &Output) -> toml::Table {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .parse()
        .expect("the printed configuration is TOML")
}

#[test]
fn file_then_environment_then_flags() {
    let file =
        "workers = 10\nlease = \"20s\"\nretention = \"2d\"\n[quotas.tenants.acme]\nplugins = 3\n";
    // The file alone.
    let only_file = value(&print_config(file, &[], &[]));
    assert_eq!(only_file["workers"].as_integer(), Some(10));
    assert_eq!(only_file["retention"].as_str(), Some("2days"));
    assert_eq!(
        only_file["quotas"]["tenants"]["acme"]["plugins"].as_integer(),
        Some(3)
    );
    // The environment over the file.
    let env = value(&print_config(
        file,
        &[("TASKHOST_WORKERS", "20"), ("TASKHOST_LEASE", "40s")],
        &[],
    ));
    assert_eq!(env["workers"].as_integer(), Some(20));
    assert_eq!(env["lease"].as_str(), Some("40s"));
    // A flag over both.
    let flag = value(&print_config(
        file,
        &[("TASKHOST_WORKERS", "20")],
        &["--workers", "30"],
    ));
    assert_eq!(flag["workers"].as_integer(), Some(30));
    assert_eq!(
        flag["lease"].as_str(),
        Some("20s"),
        "the file's, as nothing overrides it"
    );
    // Defaults fill the rest.
    assert_eq!(
        flag["tenant_limit"].as_integer(),
        Some(7),
        "a quarter of the workers"
    );
    assert_eq!(flag["role"].as_str(), Some("all"));
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let output = print_config("workers = 4\nwrokers = 5\n", &[], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrokers"), "{stderr}");
    let output = print_config("[quotas.tenants.acme]\nplugin = 5\n", &[], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("plugin"));
}

#[test]
fn printed_configuration_masks_secrets() {
    let output = print_config(
        "jwt_secret = \"a-very-secret-value-of-32-bytes!!\"\nstore = \"mongodb://admin:hunter2@db:27017/taskhost\"\n",
        &[],
        &[],
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let printed = value(&output);
    assert!(!text.contains("a-very-secret"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(printed["jwt_secret"].as_str(), Some("********"));
    assert_eq!(
        printed["store"].as_str(),
        Some("mongodb://********@db:27017/taskhost")
    );
}

#[test]
fn workflow_bounds_may_be_set_tighter_not_looser() {
    let tight = value(&print_config(
        "[workflow]\nmax_children = 10\n",
        &[],
        &["--workflow-max-lifetime", "1d"],
    ));
    let workflow = &tight["workflow"];
    assert_eq!(workflow["max_children"].as_integer(), Some(10));
    assert_eq!(workflow["max_lifetime"].as_str(), Some("1day"));
    assert_eq!(workflow["max_depth"].as_integer(), Some(4), "a default");
    let loose = print_config("", &[], &["--workflow-max-children", "5000"]);
    assert!(!loose.status.success());
    let stderr = String::from_utf8_lossy(&loose.stderr);
    assert!(
        stderr.contains("--workflow-max-children is 5000") && stderr.contains("at most 1000"),
        "{stderr}"
    );
}
