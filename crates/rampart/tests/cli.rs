//! The binary as an operator uses it: `validate` on good and broken files, `--help`, `--version`.

use std::path::PathBuf;
use std::process::Command;

fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn validate_reports_every_error_with_file_line_column_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("rampart-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(
        &file,
        "listen:\n  - addr: \"nowhere\"\nupstreams:\n  api: { targets: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: /a, methods: [GET], upstream: apu }\n  - { path: /b, upstream: api }\n",
    )
    .unwrap();
    let out = rampart().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = file.display().to_string();
    assert!(err.contains(&format!("{f}:2:11: invalid address `nowhere`")), "{err}");
    assert!(err.contains(&format!("{f}:6:")) && err.contains("unknown upstream `apu`"), "{err}");
    assert!(err.contains("declared upstreams: api"), "{err}");
    assert!(err.contains(&format!("{f}:7:")) && err.contains("lists no methods"), "{err}");
    assert!(err.matches("hint:").count() >= 3, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_examples_validate() {
    let out = rampart().arg("validate").arg(repo().join("examples/quickstart.yaml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The OpenAPI example with its sample spec (the spec path defaults to examples/specs/sample-api.yaml).
    let out = rampart()
        .arg("validate")
        .arg(repo().join("examples/openapi.yaml"))
        .env("RAMPART_UPSTREAM", "http://127.0.0.1:9000")
        .env_remove("RAMPART_OPENAPI")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tls_example_validates_with_real_certificates() {
    let dir = std::env::temp_dir().join(format!("rampart-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["api.example.com".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.join("api.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    let validate_with = |key: &str| {
        rampart()
            .arg("validate")
            .arg(repo().join("examples/tls.yaml"))
            .env("RAMPART_TLS_CERT", dir.join("api.pem"))
            .env("RAMPART_TLS_KEY", dir.join(key))
            .output()
            .unwrap()
    };
    let out = validate_with("api.key");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The key of another certificate is refused with the file named.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    let out = validate_with("other.key");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not belong together"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_and_version() {
    let out = rampart().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve") && text.contains("validate") && text.contains("demo") && text.contains("Examples:"),
        "{text}"
    );
    let out = rampart().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rampart 0."));
}

#[test]
fn serve_upstream_refuses_a_non_url() {
    let out = rampart().args(["serve", "--upstream", "not a url", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream"));
}

/// Starts `rampart serve --config` and returns the child with the address it printed.
fn serve(config: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = rampart()
        .args(["serve", "--no-watch", "--config"])
        .arg(config)
        .env("RAMPART_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("rampart exited before listening").unwrap();
        if let Some(a) = line.strip_prefix("rampart listening on ") {
            break a.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
}

#[test]
fn sighup_reloads_and_sigterm_stops() {
    let dir = std::env::temp_dir().join(format!("rampart-cli-sig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An upstream address nobody listens on: a routed request gets 502, an unrouted one 404.
    let up_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = dir.join("rampart.yaml");
    let write = |route: &str| {
        // Written without the file watcher noticing a half-written file: temp file + rename.
        let text = format!(
            "listen: [{{ addr: \"127.0.0.1:0\" }}]\nupstreams:\n  app: {{ targets: [\"http://{up_addr}\"] }}\nroutes:\n  - {{ path: {route}, methods: [GET], upstream: app }}\n"
        );
        std::fs::write(dir.join("tmp.yaml"), text).unwrap();
        std::fs::rename(dir.join("tmp.yaml"), &config).unwrap();
    };
    write("/one");
    let (mut child, addr) = serve(&config);
    assert!(http_get(addr, "/two").starts_with("HTTP/1.1 404"));
    write("/two");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(http_get(addr, "/two").starts_with("HTTP/1.1 404"), "reloaded without a signal despite --no-watch");
    signal(&child, "-HUP");
    let mut reloaded = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        // /two is declared now: the dead upstream answers 502 instead of the router's 404.
        if http_get(addr, "/two").starts_with("HTTP/1.1 502") {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP did not reload");
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).ok();
}
