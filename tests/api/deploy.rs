//! The deployment files (deploy/): compose, Kubernetes and systemd structure, and that every
//! `RELAY__…` variable they set is a real config key, checked by the relay's own `check-config`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file as JSON values, so the assertions below index it like JSON.
fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

fn port_of(bind: &str) -> u16 {
    bind.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("bind {bind}: {e}"))
        .port()
}

/// What `whaticket-relay check-config` makes of a config file and an environment: the effective
/// configuration as TOML, or the error it printed. The environment is only `vars` (plus PATH):
/// nothing of the test process leaks in.
fn check_config(file: &Path, vars: &BTreeMap<String, String>) -> Result<toml::Table, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_whaticket-relay"));
    command
        .env_clear()
        .args(["check-config", "--config"])
        .arg(file);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(vars);
    let out = command.output().expect("run whaticket-relay check-config");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("check-config prints UTF-8");
    Ok(text
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("check-config output is not TOML: {e}\n{text}")))
}

/// Asserts that `vars` are accepted as they are, and that the check would catch a misspelt key
/// (so a pass means the names were checked, not ignored).
fn effective_config(file: &Path, vars: &BTreeMap<String, String>, origin: &str) -> toml::Table {
    for name in vars.keys() {
        assert!(
            name.starts_with("RELAY__"),
            "{origin}: {name} is not a RELAY__ variable"
        );
    }
    let config = check_config(file, vars)
        .unwrap_or_else(|e| panic!("{origin}: the relay refuses its RELAY__ variables: {e}"));
    let mut misspelt = vars.clone();
    misspelt.insert("RELAY__STORAGE__PAHT".to_owned(), "/x".to_owned());
    let err = check_config(file, &misspelt).expect_err("an unknown key must be refused");
    assert!(
        err.contains("paht"),
        "the error names the unknown key: {err}"
    );
    config
}

fn toml_str<'a>(table: &'a toml::Table, section: &str, key: &str) -> &'a str {
    table
        .get(section)
        .and_then(|s| s.get(key))
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("no {section}.{key} in {table}"))
}

fn shutdown_timeout(config: &toml::Table) -> Duration {
    humantime::parse_duration(toml_str(config, "server", "shutdown_timeout"))
        .expect("shutdown_timeout")
}

/// Compose's `${NAME:-default}` / `${NAME:?message}` interpolation, with a stand-in value for the
/// required variables (they are secrets the operator supplies).
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|i| start + i)
            .expect("unclosed ${");
        let expr = &rest[start + 2..end];
        if let Some((_, default)) = expr.split_once(":-") {
            out.push_str(default);
        } else {
            assert!(
                expr.contains(":?"),
                "{expr}: a compose variable needs a default or a :? error"
            );
            out.push_str("operator-supplied-secret-42");
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `ENV` lines of the Dockerfile: the image's defaults, under the compose environment.
fn dockerfile_env(dockerfile: &str) -> BTreeMap<String, String> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(|pairs| {
            pairs
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV {pair}: use NAME=value"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn compose_runs_the_relay_and_rabbitmq_with_a_persistent_data_volume() {
    let compose = yaml(&repo("deploy/docker-compose.yml"));
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["relay", "rabbitmq"]));
    let relay = &services["relay"];
    let rabbitmq = &services["rabbitmq"];
    assert!(str_at(rabbitmq, "/image").starts_with("rabbitmq:3.13-management"));
    assert!(
        rabbitmq["healthcheck"]["test"].is_array(),
        "rabbitmq has a healthcheck"
    );
    assert_eq!(
        str_at(relay, "/depends_on/rabbitmq/condition"),
        "service_healthy"
    );

    // The image the relay service builds.
    let dockerfile_path = repo("deploy")
        .join(str_at(relay, "/build/context"))
        .join(str_at(relay, "/build/dockerfile"));
    let dockerfile = read(&dockerfile_path);
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/healthz"),
        "image healthcheck on /healthz"
    );
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the image sets USER");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "runs as non-root, not {user}"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/whaticket-relay\"]"));
    assert!(dockerfile.contains("\"serve\", \"--config\", \"/etc/whaticket-relay/relay.toml\""));
    assert!(dockerfile.contains("COPY config/default.toml /etc/whaticket-relay/relay.toml"));

    // The environment the relay gets: the image's ENV, overridden by compose's.
    let mut vars = dockerfile_env(&dockerfile);
    for (name, value) in relay["environment"]
        .as_object()
        .expect("relay environment as a map")
    {
        let value = value
            .as_str()
            .unwrap_or_else(|| panic!("{name}: quote the value"));
        vars.insert(name.clone(), interpolate(value));
    }
    let config = effective_config(&repo("config/default.toml"), &vars, "docker-compose.yml");

    // The data directory the relay uses is the named volume, and it is declared.
    let data_path = toml_str(&config, "storage", "path");
    let mounts: Vec<&str> = relay["volumes"]
        .as_array()
        .expect("relay volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let data_mount = mounts
        .iter()
        .find_map(|m| m.split_once(':').filter(|(_, target)| *target == data_path))
        .unwrap_or_else(|| panic!("no volume mounted at storage.path {data_path}: {mounts:?}"));
    assert!(
        compose["volumes"].get(data_mount.0).is_some(),
        "named volume {} is declared",
        data_mount.0
    );
    let volume_line = dockerfile
        .lines()
        .find(|l| l.starts_with("VOLUME"))
        .expect("the image declares its VOLUME");
    assert!(
        volume_line.contains(data_path),
        "{volume_line} vs {data_path}"
    );

    // The published port is the one the relay binds, and the image's healthcheck probes it.
    let port = port_of(toml_str(&config, "server", "bind"));
    let ports: Vec<&str> = relay["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{ports:?} publish {port}"
    );
    assert!(dockerfile.contains(&format!("/dev/tcp/127.0.0.1/{port}")));
    // Metrics on their own port, published on the host's loopback only.
    let metrics_port = port_of(toml_str(&config, "metrics", "bind"));
    assert_ne!(metrics_port, port, "metrics on the webhook listener");
    assert!(
        ports.contains(&format!("127.0.0.1:{metrics_port}:{metrics_port}").as_str()),
        "{ports:?}: metrics published beyond the host's loopback, or not at all"
    );

    let connections = config["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0]["name"].as_str(), Some("loja-centro"));
    assert_eq!(toml_str(&config, "log", "format"), "json");

    // docker stop waits longer than the relay's own drain.
    let grace =
        humantime::parse_duration(str_at(relay, "/stop_grace_period")).expect("stop_grace_period");
    assert!(
        grace > shutdown_timeout(&config),
        "stop_grace_period {grace:?} must exceed server.shutdown_timeout"
    );
}

/// Every manifest of deploy/k8s, by kind (then name).
fn k8s_manifests() -> BTreeMap<(String, String), Value> {
    let dir = repo("deploy/k8s");
    let mut manifests = BTreeMap::new();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/k8s") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc = yaml(&path);
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_owned();
        let kind = str_at(&doc, "/kind").to_owned();
        assert!(doc["apiVersion"].is_string(), "{file}: apiVersion");
        if kind != "Kustomization" {
            files.insert(file.clone());
            let name = str_at(&doc, "/metadata/name").to_owned();
            manifests.insert((kind, name), doc);
        } else {
            manifests.insert((kind, file), doc);
        }
    }
    let kustomization = &manifests[&("Kustomization".to_owned(), "kustomization.yaml".to_owned())];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    assert_eq!(listed, files, "kustomization.yaml lists every manifest");
    manifests
}

#[test]
fn kubernetes_statefulset_probes_volume_and_env_match_the_relay_config() {
    let manifests = k8s_manifests();
    let get = |kind: &str, name: &str| {
        manifests
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
    };
    let sts = get("StatefulSet", "whaticket-relay");
    let pod = &sts["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // The config file the container reads is the ConfigMap's relay.toml.
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[..2], ["serve", "--config"]);
    let config_file = Path::new(args[2]);
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| str_at(m, "/mountPath"))
            .unwrap_or_else(|| panic!("volume {volume} not mounted"))
    };
    let volumes = pod["volumes"].as_array().expect("volumes");
    let config_volume = volumes
        .iter()
        .find(|v| v["configMap"].is_object())
        .expect("a configMap volume");
    assert_eq!(
        Path::new(mount_of(str_at(config_volume, "/name"))),
        config_file.parent().expect("dir")
    );
    let configmap = get("ConfigMap", str_at(config_volume, "/configMap/name"));
    let file_name = config_file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let relay_toml = str_at(&configmap["data"], &format!("/{file_name}"));

    // The Secret's values reach the relay as environment variables.
    let secret_name = str_at(container, "/envFrom/0/secretRef/name");
    let secret = get("Secret", secret_name);
    let mut vars = BTreeMap::new();
    for (name, value) in secret["stringData"].as_object().expect("stringData") {
        vars.insert(
            name.clone(),
            value.as_str().expect("string value").to_owned(),
        );
    }
    for env in container["env"].as_array().into_iter().flatten() {
        vars.insert(
            str_at(env, "/name").to_owned(),
            str_at(env, "/value").to_owned(),
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(file_name);
    std::fs::write(&path, relay_toml).expect("write relay.toml");
    let config = effective_config(&path, &vars, "deploy/k8s");

    // storage.path is the volumeClaimTemplate's mount.
    let claims = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert_eq!(claims.len(), 1);
    let claim = str_at(&claims[0], "/metadata/name");
    assert!(
        !volumes.iter().any(|v| v["name"] == claim),
        "{claim} comes from the claim template, not a pod volume"
    );
    assert_eq!(mount_of(claim), toml_str(&config, "storage", "path"));
    assert_eq!(str_at(&claims[0], "/spec/accessModes/0"), "ReadWriteOnce");

    // Probes: /healthz for liveness, store-only /readyz for readiness (a broker outage must not
    // take an accepting relay out of the Service), on the port the relay binds.
    let bind_port = port_of(toml_str(&config, "server", "bind"));
    let container_port = |port: &Value| -> u64 {
        match port {
            Value::Number(n) => n.as_u64().expect("port number"),
            Value::String(name) => container["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port named {name}")),
            other => panic!("port {other}"),
        }
    };
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz?scope=ingest"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(str_at(get, "/path"), path, "{probe}");
        assert_eq!(
            container_port(&get["port"]),
            u64::from(bind_port),
            "{probe} port"
        );
    }

    // Services select the pods and reach the container port; the StatefulSet names its headless one.
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    assert_eq!(sts["spec"]["selector"]["matchLabels"], *labels);
    let headless = get("Service", str_at(sts, "/spec/serviceName"));
    assert_eq!(str_at(headless, "/spec/clusterIP"), "None");
    for service in [headless, get("Service", "whaticket-relay")] {
        assert_eq!(service["spec"]["selector"], *labels);
        let target = &service["spec"]["ports"][0]["targetPort"];
        assert_eq!(container_port(target), u64::from(bind_port));
    }

    // Metrics on their own port, scraped on the pod (annotations) and reached by no Service.
    let metrics_port = port_of(toml_str(&config, "metrics", "bind"));
    assert_ne!(metrics_port, bind_port, "metrics on the webhook listener");
    assert_eq!(
        container_port(&Value::String("metrics".into())),
        u64::from(metrics_port)
    );
    let annotations = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        str_at(annotations, "/prometheus.io~1port"),
        metrics_port.to_string()
    );
    assert_eq!(str_at(annotations, "/prometheus.io~1path"), "/metrics");
    for service in [headless, get("Service", "whaticket-relay")] {
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert_ne!(container_port(&port["targetPort"]), u64::from(metrics_port));
        }
    }

    // Non-root, and the kubelet waits for the relay's drain before SIGKILL.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(Duration::from_secs(grace) > shutdown_timeout(&config));
}

/// The unit as `section → key → values` (a key may repeat, e.g. SystemCallFilter).
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("line {}: key outside a section", n + 1));
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        sections
            .entry(section)
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    sections
}

#[test]
fn systemd_unit_is_hardened_and_runs_serve_with_the_config() {
    let path = repo("deploy/systemd/whaticket-relay.service");
    let text = read(&path);
    let unit = parse_unit(&text);
    let service = unit.get("Service").expect("[Service]");
    assert!(unit.contains_key("Unit") && unit.contains_key("Install"));
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("[Service] {key}: expected one value, got {other:?}"),
        }
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/whaticket-relay serve --config /etc/whaticket-relay/relay.toml"
    );
    for (key, value) in [
        ("Restart", "always"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectory", "whaticket-relay"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(one(key), value, "[Service] {key}");
    }
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert!(
        one("MemoryMax").ends_with(['K', 'M', 'G']),
        "MemoryMax is a size"
    );
    assert!(
        service
            .get("CapabilityBoundingSet")
            .is_some_and(|v| v.iter().all(String::is_empty)),
        "no capabilities"
    );

    // The relay's data directory is the state directory, and it outlasts the relay's drain.
    let environment: BTreeMap<String, String> = service
        .get("Environment")
        .into_iter()
        .flatten()
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("Environment=NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let config = effective_config(
        &repo("config/default.toml"),
        &environment,
        "whaticket-relay.service",
    );
    assert_eq!(
        toml_str(&config, "storage", "path"),
        format!("/var/lib/{}", one("StateDirectory"))
    );
    let stop = humantime::parse_duration(one("TimeoutStopSec")).expect("TimeoutStopSec");
    assert!(
        stop > shutdown_timeout(&config),
        "TimeoutStopSec {stop:?} must exceed server.shutdown_timeout"
    );

    // systemd's own check, where systemd is installed. The unit is copied with ExecStart pointed
    // at the binary just built, since verify insists that the executable exists.
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze unavailable: the unit was checked by the structural assertions above only");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("whaticket-relay.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/whaticket-relay",
            env!("CARGO_BIN_EXE_whaticket-relay"),
        ),
    )
    .expect("write unit copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on unknown keys and only warns: any line about the unit is a defect.
    let about_unit: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("whaticket-relay.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {report}"
    );
}
