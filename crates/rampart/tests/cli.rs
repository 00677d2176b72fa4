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
        "listen:\n  - addr: \"nowhere\"\nupstreams:\n  api: { targets: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: /a, methods: [GET], upstream: apu, auth: none }\n  - { path: /b, upstream: api, auth: none }\n  - { path: /c, methods: [GET], upstream: api }\n",
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
    assert!(err.contains(&format!("{f}:8:")) && err.contains("route `/c` does not say who may call it"), "{err}");
    assert!(err.contains("add `auth: none` for a public route"), "{err}");
    assert!(err.matches("hint:").count() >= 4, "{err}");
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
            "listen: [{{ addr: \"127.0.0.1:0\" }}]\nupstreams:\n  app: {{ targets: [\"http://{up_addr}\"] }}\nroutes:\n  - {{ path: {route}, methods: [GET], upstream: app, auth: none }}\n"
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

#[test]
fn keys_add_list_revoke_never_show_a_stored_secret() {
    let dir = std::env::temp_dir().join(format!("rampart-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.yaml");
    let run = |args: &[&str]| {
        let out = rampart().arg("keys").args(args).arg("--file").arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let added =
        run(&["add", "--consumer", "billing", "--scope", "orders:read", "--scope", "orders:write", "--expires", "30d"]);
    let secret = added.lines().find(|l| l.starts_with("rk_")).expect("the secret is printed once").to_string();
    let id = added.split_whitespace().nth(2).unwrap().to_string();
    assert!(id.starts_with("k_"), "{added}");
    run(&["add", "--consumer", "ops", "--role", "admin"]);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&secret), "the secret was stored");
    let listed = run(&["list"]);
    assert!(
        listed.contains(&id) && listed.contains("billing") && listed.contains("orders:read,orders:write"),
        "{listed}"
    );
    assert!(listed.contains("ops") && listed.contains("admin") && listed.matches("active").count() == 2, "{listed}");
    assert!(!listed.contains(&secret) && !listed.contains("rk_"), "list printed a secret: {listed}");
    let hash = stored.lines().find_map(|l| l.trim().strip_prefix("sha256: ")).unwrap();
    assert!(!listed.contains(hash), "list printed a hash");
    let revoked = rampart().args(["keys", "revoke", &id, "--file"]).arg(&file).output().unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(!String::from_utf8_lossy(&revoked.stdout).contains("rk_"));
    assert!(run(&["list"]).contains("revoked"));
    let unknown = rampart().args(["keys", "revoke", "k_nope", "--file"]).arg(&file).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    // The identity examples validate with the key file and a JWKS.
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#).unwrap();
    let out = rampart()
        .arg("validate")
        .arg(repo().join("examples/jwt.yaml"))
        .env("RAMPART_UPSTREAM", "http://127.0.0.1:9")
        .env("RAMPART_JWKS", &jwks)
        .env("RAMPART_JWT_ISSUER", "https://id.example/")
        .env("RAMPART_JWT_AUDIENCE", "orders-api")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = rampart()
        .arg("validate")
        .arg(repo().join("examples/api-keys.yaml"))
        .env("RAMPART_UPSTREAM", "http://127.0.0.1:9")
        .env("RAMPART_API_KEYS", &file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

fn http_post_json(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn http_get_with(addr: std::net::SocketAddr, path: &str, header: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn demo_prints_a_working_api_key_and_stores_only_its_hash() {
    use std::io::{BufRead, BufReader};
    let mut child = rampart()
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("RAMPART_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    while !printed.contains("Ctrl-C stops") {
        let line = lines.next().expect("demo exited early").unwrap();
        printed.push_str(&line);
        printed.push('\n');
    }
    std::thread::spawn(move || for _ in lines {});
    let addr: std::net::SocketAddr =
        printed.split("gateway on http://").nth(1).and_then(|r| r.split(',').next()).unwrap().parse().unwrap();
    let key_line = printed.lines().find(|l| l.contains("/orders -H 'X-API-Key: rk_")).expect(&printed);
    let key = key_line.split("X-API-Key: ").nth(1).unwrap().split('\'').next().unwrap();
    assert!(http_get_with(addr, "/orders", &format!("X-API-Key: {key}")).starts_with("HTTP/1.1 200"));
    let denied = http_get(addr, "/orders");
    assert!(denied.starts_with("HTTP/1.1 401") && denied.contains("auth.failed"), "{denied}");
    assert!(http_get_with(addr, "/orders", "X-API-Key: rk_made_up_key").starts_with("HTTP/1.1 401"));
    assert!(http_get(addr, "/products").starts_with("HTTP/1.1 200"));
    // The positive model: the routes validate against the embedded sample spec.
    let body_of = |marker: &str| {
        let line = printed.lines().find(|l| l.contains(marker)).expect(marker);
        line.split("-d '").nth(1).and_then(|r| r.split('\'').next()).unwrap().to_string()
    };
    let created = http_post_json(addr, "/users", &body_of("# 201"));
    assert!(created.starts_with("HTTP/1.1 201") && !created.contains("correct horse"), "{created}");
    let promoted = http_post_json(addr, "/users", &body_of("# inspect.schema: mass assignment"));
    assert!(promoted.starts_with("HTTP/1.1 400") && promoted.contains("inspect.schema"), "{promoted}");
    let undeclared = http_get(addr, "/users?debug=true");
    assert!(undeclared.starts_with("HTTP/1.1 400") && undeclared.contains("inspect.schema"), "{undeclared}");
    let sqli = http_get(addr, "/products?q=1%27%20UNION%20SELECT%20password%20FROM%20users--");
    assert!(sqli.starts_with("HTTP/1.1 403") && sqli.contains("inspect.sqli"), "{sqli}");
    let keys_file = std::env::temp_dir().join(format!("rampart-demo-{}", child.id())).join("keys.yaml");
    let stored = std::fs::read_to_string(&keys_file).unwrap();
    assert!(stored.contains("demo-client") && !stored.contains(key), "the demo stored its secret");
    signal(&child, "-TERM");
    let _ = child.wait();
}
