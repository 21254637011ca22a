//! The binary's command line: `check-config` output and exit codes.

use std::path::Path;
use std::process::Command;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
}

/// `check-config --config <path>`, to run as it is or with more environment.
fn check_config(path: &Path) -> Command {
    let mut command = relay();
    command.args(["check-config", "--config"]).arg(path);
    command
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
    let out = check_config(&path).output().unwrap();
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
    let out = check_config(&path).output().unwrap();
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

#[test]
fn check_config_warns_when_the_redaction_list_drops_built_in_credential_keys() {
    let dir = tempfile::tempdir().unwrap();
    let check = |redact: &str| {
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            format!(
                "{redact}\n[[connections]]\nname = \"loja\"\ntokens = [\"super-secret-token-1\"]\n"
            ),
        )
        .unwrap();
        let out = check_config(&path).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        // A warning, not an error: the relay runs with the operator's list.
        assert!(out.status.success(), "{stderr}");
        (stdout, stderr)
    };

    // The list the previous release shipped, kept in an operator's file across the upgrade.
    let (_, stderr) = check(
        "[redact]\nkeys = [\"passwordHash\", \"password\", \"token\", \"metaAccessToken\", \"accessToken\", \"token_origin\"]\n",
    );
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: redact.keys"))
        .unwrap_or_else(|| panic!("no redaction warning: {stderr}"));
    for dropped in [
        "`authToken`",
        "`x-n8n-api-key`",
        "`authorization`",
        "`client_secret`",
        "`apiKey`",
        "`secret`",
    ] {
        assert!(warning.contains(dropped), "{dropped}: {warning}");
    }
    for kept in ["`password`", "`token`", "`accessToken`", "`token_origin`"] {
        assert!(!warning.contains(kept), "{kept}: {warning}");
    }
    assert!(
        warning.contains("extra_keys"),
        "says how to add keys: {warning}"
    );

    // Own keys added beside the built-in list: nothing to warn about, both in force.
    let (stdout, stderr) = check("[redact]\nextra_keys = [\"cpf\"]\n");
    assert!(!stderr.contains("redact"), "{stderr}");
    assert!(stdout.contains("\"cpf\""), "{stdout}");
    assert!(stdout.contains("\"authToken\""), "{stdout}");

    // The same list set from the environment.
    let path = dir.path().join("relay.toml");
    let out = check_config(&path)
        .env("RELAY__REDACT__KEYS", "[\"cpf\", \"Authorization\"]")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("`authToken`"), "{stderr}");
    assert!(!stderr.contains("`authorization`"), "{stderr}");
}
