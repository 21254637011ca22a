//! The binary's command line: `check-config` output and exit codes.

use std::process::Command;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        "[amqp]\nurl = \"amqp://relay:broker-pass-42@mq:5672/%2f\"\n\n[[connections]]\nname = \"loja\"\ntokens = [\"super-secret-token-1\"]\nhmac_secrets = [\"whsec_c2VjcmV0LXNpZ25pbmcta2V5\"]\n",
    )
    .unwrap();
    let out = relay()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("name = \"loja\""), "{stdout}");
    assert!(
        stdout.contains("dedup_window"),
        "defaults are filled in: {stdout}"
    );
    for secret in [
        "broker-pass-42",
        "super-secret-token-1",
        "c2VjcmV0LXNpZ25pbmcta2V5",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
}

#[test]
fn check_config_names_the_bad_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, "[storage]\ndedup_window = \"tomorrow\"\n").unwrap();
    let out = relay()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("dedup_window"), "{stderr}");
}

#[test]
fn environment_overrides_reach_check_config() {
    let out = relay()
        .args(["check-config"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RELAY__AMQP__EXCHANGE", "from-env")
        .env("RELAY__SERVER__BIND", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.bind"));

    let out = relay()
        .args(["check-config"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RELAY__AMQP__EXCHANGE", "from-env")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("exchange = \"from-env\""));
}
