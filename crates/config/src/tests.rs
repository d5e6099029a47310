use super::*;
use crate::secrets::tests::FakeSecrets;
use proptest::prelude::*;
use wrapup_core::catalog::{Catalog, CodeEntry, QueueEntry};
use wrapup_core::rules::{DecideFrom, DecideSpec, Fallback};
use wrapup_core::{Channel, Direction, LegFacts, Mode, Timing};

const EXAMPLE: &str = include_str!("../examples/wrapup.example.toml");

fn env() -> FakeSecrets {
    FakeSecrets::with_env(&[
        ("WRAPUP_ADMIN_TOKEN", "admin-token-value"),
        ("GENESYS_CLIENT_ID", "client-1"),
        ("GENESYS_CLIENT_SECRET", "s3cr3t-one"),
        ("GENESYS_CLIENT_ID_2", "client-2"),
        ("GENESYS_CLIENT_SECRET_2", "s3cr3t-two"),
        ("WRAPUP_INTAKE_KEY", "intake-key-value"),
    ])
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse_with(text, "w.toml", Path::new(""), &env())
}

/// The problems of `text`, as displayed.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(text: &str, expected_prefix: &str, expected_fragment: &str) {
    let all = problems(text);
    assert!(
        all.iter().any(|p| p.starts_with(expected_prefix) && p.contains(expected_fragment)),
        "no problem starting with {expected_prefix:?} containing {expected_fragment:?} in:\n{}",
        all.join("\n")
    );
}

const CONNECTION: &str = r#"
[[connections]]
name = "prod"
kind = "genesys"
region = "eu_west_1"
client_id = "client-1"
client_secret = "env:GENESYS_CLIENT_SECRET"
"#;

fn with_connection(rest: &str) -> String {
    format!("{CONNECTION}{rest}")
}

#[test]
fn the_example_parses() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("./wrapup-data"));
    assert_eq!(config.admin.token.as_ref().unwrap().expose(), "admin-token-value");
    let prod = config.connection("prod").unwrap();
    assert_eq!(prod.kind, Platform::Genesys);
    assert_eq!(prod.endpoint.api_base.as_str(), "https://api.mypurecloud.ie/");
    assert_eq!(prod.endpoint.login_base.as_str(), "https://login.mypurecloud.ie/");
    assert_eq!(prod.clients.len(), 2);
    assert_eq!(prod.clients[1].client_id, "client-2");
    assert_eq!(prod.clients[1].client_secret.expose(), "s3cr3t-two");
    assert_eq!(prod.intake.api_key.as_ref().unwrap().expose(), "intake-key-value");
    assert_eq!(prod.catalog_ttl, std::time::Duration::from_secs(300));
    assert_eq!(prod.request_timeout, std::time::Duration::from_secs(10));
    assert_eq!(prod.reconcile_every, std::time::Duration::from_secs(60));
    assert_eq!(prod.reconcile_window, std::time::Duration::from_secs(3600));
    let sandbox = config.connection("sandbox").unwrap();
    assert_eq!(sandbox.endpoint.api_base.as_str(), "http://127.0.0.1:8089/");
    assert_eq!(sandbox.endpoint.login_base, sandbox.endpoint.api_base);
    assert_eq!(sandbox.requests_per_minute, 300);
    assert_eq!(sandbox.intake.api_key_header, "x-wrapup-intake-key");
    assert_eq!(config.rules.len(), 3);
    assert!(prod.decisions.is_some() && sandbox.decisions.is_none());
    assert_eq!(config.decision_hooks[0].name, "orders");
    assert!(config.rules.rules()[2].decide.is_some());
    assert_eq!(
        config.rule_location(1).unwrap().to_string(),
        format!("w.toml:{}:1", line_of(EXAMPLE, "name = \"support calls left uncoded\"") - 1)
    );
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_example_loads_from_disk_with_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, "from-a-file\n").unwrap();
    let text = EXAMPLE
        .replace("env:GENESYS_CLIENT_SECRET_2", "file:secret.txt")
        .replace("env:GENESYS_CLIENT_SECRET\"", "literal:x\"")
        .replace("env:GENESYS_CLIENT_ID_2", "client-2")
        .replace("env:GENESYS_CLIENT_ID", "client-1")
        .replace("env:WRAPUP_ADMIN_TOKEN", "literal:a")
        .replace("env:WRAPUP_INTAKE_KEY", "env:WRAPUP_CONFIG_TEST_INTAKE_KEY");
    let path = dir.path().join("wrapup.toml");
    std::fs::write(&path, text).unwrap();
    // Only this test reads this variable.
    std::env::set_var("WRAPUP_CONFIG_TEST_INTAKE_KEY", "k");
    let config = Config::load(&path).unwrap();
    let prod = config.connection("prod").unwrap();
    assert_eq!(prod.clients[1].client_secret.expose(), "from-a-file");
    assert_eq!(prod.intake.api_key.as_ref().unwrap().expose(), "k");
    assert_eq!(config.data_dir, dir.path().join("./wrapup-data"));
    assert!(config.rule_location(0).unwrap().file.ends_with("wrapup.toml"));

    let missing = Config::load(dir.path().join("nope.toml")).unwrap_err();
    assert_eq!(missing.len(), 1);
    assert!(missing.to_string().contains("nope.toml: cannot read config file"), "{missing}");
}

#[test]
fn a_minimal_file_gets_the_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
    assert!(config.connections.is_empty());
    assert!(config.rules.is_empty());
    assert!(config.admin.token.is_none());
    assert!(config.admin.metrics_token.is_none());
    assert_eq!(config.admin_listen, None);
    assert_eq!(config.http, HttpLimits::default());
    assert_eq!(config.http.header_read_timeout, std::time::Duration::from_secs(5));
    assert!(config.http.max_connections > config.http.max_requests());
}

#[test]
fn the_http_edge_limits_and_the_admin_address_are_read() {
    let config = parse(
        r#"
listen = "0.0.0.0:8080"
admin_listen = "127.0.0.1:8081"
[admin]
metrics_token = "env:WRAPUP_ADMIN_TOKEN"
viewer_token = "env:WRAPUP_ADMIN_TOKEN"
[http]
header_read_timeout_ms = 2000
body_read_timeout_ms = 3000
idle_timeout_ms = 60000
request_timeout_ms = 20000
max_connections = 100
max_intake_requests = 50
max_admin_requests = 10
max_health_requests = 10
"#,
    )
    .unwrap();
    assert_eq!(config.admin_listen, Some("127.0.0.1:8081".parse().unwrap()));
    assert_eq!(config.admin.metrics_token.as_ref().unwrap().expose(), "admin-token-value");
    assert_eq!(config.admin.viewer_token.as_ref().unwrap().expose(), "admin-token-value");
    assert!(config.admin.token.is_none());
    let http = config.http;
    assert_eq!(http.header_read_timeout, std::time::Duration::from_secs(2));
    assert_eq!(http.body_read_timeout, std::time::Duration::from_secs(3));
    assert_eq!(http.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(http.request_timeout, std::time::Duration::from_secs(20));
    assert_eq!((http.max_connections, http.max_requests()), (100, 70));
}

#[test]
fn http_edge_limits_that_cannot_hold_are_reported_with_their_location() {
    assert_problem("[http]\nheader_read_timeout_ms = 0\n", "w.toml:2:26: http.header_read_timeout_ms", "between 100");
    assert_problem("[http]\nmax_connections = 10\n", "w.toml:2:19: http.max_connections", "between 16");
    assert_problem("[http]\nmax_conections = 10\n", "w.toml:2:1: http.max_conections", "unknown key");
    assert_problem(
        "[http]\nmax_connections = 300\n",
        "w.toml:2:19: http.max_connections",
        "more than max_intake_requests + max_admin_requests + max_health_requests (352)",
    );
    assert_problem("[http]\nmax_intake_requests = 2000\n", "w.toml:1:1: http", "(2096)");
    assert_problem(
        "[http]\nbody_read_timeout_ms = 60000\n",
        "w.toml:1:1: http",
        "not be longer than request_timeout_ms",
    );
    assert_problem(
        "listen = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n",
        "w.toml:2:16: admin_listen",
        "must differ from `listen`",
    );
    assert_problem("admin_listen = \"localhost:1\"\n", "w.toml:1:16: admin_listen", "invalid address");
    // Two ephemeral ports are two addresses.
    assert!(parse("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n").is_ok());
}

#[test]
fn rules_from_the_file_decide_legs() {
    let config = parse(EXAMPLE).unwrap();
    let leg = LegFacts {
        platform: Some(Platform::Genesys),
        channel: Some(Channel::Voice),
        direction: Direction::Inbound,
        queue_name: Some("Support".into()),
        talk_ms: Some(3_000),
        disconnect_type: Some("peer".into()),
        ..LegFacts::default()
    };
    let m = config.rules.evaluate("prod", &leg).unwrap();
    assert_eq!((m.index, m.code.as_str(), m.notes.as_deref()), (0, "Abandoned", Some("auto: voice 3s")));
    let long = LegFacts { talk_ms: Some(60_000), hold_ms: Some(4_000), ..leg.clone() };
    let m = config.rules.evaluate("prod", &long).unwrap();
    assert_eq!(m.rule_name, "support calls left uncoded");
    assert_eq!(m.timing, Timing::BeforeTimeout { margin: jiff::SignedDuration::from_secs(10) });
    assert_eq!(m.mode, Mode::Shadow);
    assert_eq!(m.notes.as_deref(), Some("auto (support calls left uncoded): Support, 60s talk, 4s hold"));
    // The second rule is limited to prod.
    assert_eq!(config.rules.evaluate("sandbox", &long), None);
}

#[test]
fn the_rule_set_version_ignores_formatting() {
    let a = parse(&with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\nwhen = { queue = \"Q\" }\n")).unwrap();
    let b = parse(&with_connection(
        "\n\n[[rules]]\ncode   = \"X\"\nname = 'r'\ntiming = \"immediate\"\n[rules.when]\nqueue = { equals = \"Q\" }\n",
    ))
    .unwrap();
    assert_eq!(a.rules.version(), b.rules.version());
}

// ---- one test per kind of problem, each with its location ----

#[test]
fn toml_syntax_errors_have_a_location() {
    assert_problem("listen = \"127.0.0.1:8080\"\nrules = [\n", "w.toml:", "invalid TOML");
    let all = problems("a = 1\nb = = 2\n");
    assert!(all[0].starts_with("w.toml:2:"), "{all:?}");
}

#[test]
fn unknown_keys_are_reported_everywhere() {
    assert_problem(
        "lisen = \"x\"\n",
        "w.toml:1:1: lisen: unknown key `lisen`",
        "expected one of: data_dir, store, listen",
    );
    assert_problem(&with_connection("regoin = \"x\"\n"), "w.toml:8:1: connections[0].regoin: unknown key", "");
    assert_problem(
        &with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\n[rules.when]\nqeue = \"Support\"\n"),
        "w.toml:12:1: rules[0].when.qeue: unknown key",
        "",
    );
    assert_problem(
        &with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\nwhen = { talk_ms = { lt = 5, lessthan = 3 } }\n"),
        "w.toml:11:",
        "rules[0].when.talk_ms.lessthan: unknown key",
    );
}

#[test]
fn wrong_types_are_reported() {
    assert_problem("listen = 8080\n", "w.toml:1:10: listen: expected a string, found an integer", "");
    assert_problem(
        &with_connection("requests_per_minute = \"lots\"\n"),
        "w.toml:8:23: connections[0].requests_per_minute: expected an integer, found a string",
        "",
    );
    assert_problem(
        &with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\nwhen = { talk_ms = \"5s\" }\n"),
        "w.toml:11:20: rules[0].when.talk_ms: expected an integer",
        "",
    );
    assert_problem("[connections]\nname = \"x\"\n", "w.toml:", "connections: expected an array of tables");
}

#[test]
fn region_and_base_url_are_exclusive_and_checked() {
    let both = CONNECTION.replace("region = \"eu_west_1\"", "region = \"eu_west_1\"\nbase_url = \"http://x\"");
    assert_problem(&both, "w.toml:6:12: connections[0].base_url", "either `region` or `base_url`, not both");
    let neither = CONNECTION.replace("region = \"eu_west_1\"\n", "");
    assert_problem(&neither, "w.toml:2:1: connections[0]", "missing `region`");
    let unknown = CONNECTION.replace("eu_west_1", "eu_west_9");
    assert_problem(&unknown, "w.toml:5:10: connections[0].region", "unknown region \"eu_west_9\"; known: us_east_1");
    let bad_url = CONNECTION.replace("region = \"eu_west_1\"", "base_url = \"ftp://sandbox\"");
    assert_problem(&bad_url, "w.toml:5:12: connections[0].base_url", "http:// or https://");
    let not_url = CONNECTION.replace("region = \"eu_west_1\"", "base_url = \"localhost:8089/x y\"");
    assert_problem(&not_url, "w.toml:5:12: connections[0].base_url", "");
}

#[test]
fn duplicate_names_are_reported_at_the_second_one() {
    let two = format!("{CONNECTION}{CONNECTION}");
    assert_problem(&two, "w.toml:10:8: connections[1].name", "duplicate connection name \"prod\" (first at line 3)");
    let rules = with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\n[[rules]]\nname = \"r\"\ncode = \"Y\"\n");
    assert_problem(&rules, "w.toml:12:8: rules[1].name", "duplicate rule name \"r\" (first at line 9)");
}

#[test]
fn bad_regexes_durations_and_templates_are_reported() {
    let rule = |body: &str| with_connection(&format!("[[rules]]\nname = \"r\"\ncode = \"X\"\n{body}\n"));
    assert_problem(
        &rule("when = { queue = { regex = \"Sup(port\" } }"),
        "w.toml:11:28: rules[0].when.queue.regex",
        "invalid regex: unclosed group",
    );
    assert_problem(
        &rule("timing = { after = \"30 seconds\" }"),
        "w.toml:11:20: rules[0].timing.after",
        "invalid duration \"30 seconds\"",
    );
    assert_problem(&rule("timing = \"later\""), "w.toml:11:10: rules[0].timing", "unknown timing \"later\"");
    assert_problem(&rule("notes = \"{{chanel}} x\""), "w.toml:11:9: rules[0].notes", "unknown placeholder {{chanel}}");
    assert_problem(
        &rule("mode = \"loud\""),
        "w.toml:11:8: rules[0].mode",
        "unknown variant `loud`, expected `enforce` or `shadow`",
    );
    assert_problem(
        &rule("when = { channel = \"fax\" }"),
        "w.toml:11:20: rules[0].when.channel",
        "unknown variant `fax`",
    );
    assert_problem(
        &rule("when = { talk_ms = { gt = 10, lt = 5 } }"),
        "w.toml:11:20: rules[0].when.talk_ms",
        "can never all hold",
    );
    assert_problem(
        &rule("when = { queue = { one_of = [] } }"),
        "w.toml:11:29: rules[0].when.queue.one_of",
        "at least one value",
    );
    assert_problem(&rule("when = { queue = { equals = \"a\", regex = \"b\" } }"), "w.toml:11:", "exactly one of");
    assert_problem(&rule("when = { queue = {} }"), "w.toml:11:18: rules[0].when.queue", "exactly one of");
}

#[test]
fn a_rule_naming_no_connection_is_reported() {
    let text = with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\nconnection = \"dev\"\n");
    assert_problem(
        &text,
        "w.toml:11:14: rules[0].connection",
        "connection \"dev\", which is not configured (known: prod)",
    );
}

#[test]
fn missing_required_keys_are_reported_at_their_table() {
    assert_problem(
        &with_connection("[[rules]]\ncode = \"X\"\n"),
        "w.toml:8:1: rules[0]",
        "missing required key `name`",
    );
    assert_problem("[[connections]]\nname = \"x\"\n", "w.toml:1:1: connections[0]", "missing required key `kind`");
}

#[test]
fn unresolvable_secrets_are_reported_without_their_value() {
    let text = CONNECTION.replace("env:GENESYS_CLIENT_SECRET", "env:NOT_SET_ANYWHERE");
    assert_problem(
        &text,
        "w.toml:7:17: connections[0].client_secret",
        "environment variable `NOT_SET_ANYWHERE` is not set",
    );
    let text = CONNECTION.replace("env:GENESYS_CLIENT_SECRET", "file:/nonexistent/secret");
    assert_problem(&text, "w.toml:7:17: connections[0].client_secret", "cannot read secret file `/nonexistent/secret`");
    let text = CONNECTION.replace("env:GENESYS_CLIENT_SECRET", "file:");
    assert_problem(&text, "w.toml:7:17: connections[0].client_secret", "`file:` needs a path");
}

#[test]
fn literal_secrets_are_refused_and_never_echoed() {
    let pasted = "Zx9-pasted-secret-Qq7";
    let text = format!(
        "[admin]\ntoken = \"{pasted}\"\n{}\n[[rules]]\nname = \"r\"\ncode = 5\n",
        CONNECTION.replace("env:GENESYS_CLIENT_SECRET", pasted).replace("client-1", "env:GENESYS_CLIENT_SECRET")
    );
    let err = parse(&text).unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(shown.contains("admin.token: secrets must be given by reference"), "{shown}");
    assert!(shown.contains("connections[0].client_secret: secrets must be given by reference"), "{shown}");
    assert!(!shown.contains(pasted), "a secret leaked into:\n{shown}");
    // A value resolved from the environment never appears either, even when something else is wrong.
    assert!(!shown.contains("s3cr3t-one"), "{shown}");
    // Nor in a syntax error, whose parser message would otherwise quote the line.
    let broken = format!("[admin]\ntoken = \"literal:{pasted}\n");
    let err = parse(&broken).unwrap_err();
    assert!(!format!("{err}{err:?}").contains(pasted), "{err}");
    // Nor in a loaded config's Debug output.
    let config = parse(&format!("[admin]\ntoken = \"literal:{pasted}\"\n{CONNECTION}")).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(pasted) && !debug.contains("s3cr3t-one"), "{debug}");
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = r#"
lisen = "x"
[admin]
token = "oops"

[[connections]]
name = "prod"
kind = "genesys"
region = "mars_1"
client_id = "a"
client_secret = "env:NOT_SET_ANYWHERE"

[[rules]]
name = "r"
code = ""
connection = "dev"
[rules.when]
talk_ms = { lt = "5s" }
queue = { regex = "(" }
"#;
    let all = problems(text);
    let paths: Vec<_> = all.iter().map(|p| p.split(": ").nth(1).unwrap_or_default().to_string()).collect();
    assert_eq!(
        paths,
        [
            "lisen",
            "admin.token",
            "connections[0].region",
            "connections[0].client_secret",
            "rules[0].code",
            "rules[0].connection",
            "rules[0].when.talk_ms.lt",
            "rules[0].when.queue.regex",
        ],
        "{}",
        all.join("\n")
    );
    let lines: Vec<usize> = all.iter().map(|p| p.split(':').nth(1).unwrap().parse().unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn problems_inside_lists_are_all_reported() {
    let all = problems(&with_connection(
        "system_codes = [\"\", 5]\nextra_clients = [{ client_id = \"a\" }, { client_id = 1, client_secret = \"x\" }]\n",
    ));
    let paths: Vec<_> = all.iter().map(|p| p.split(": ").nth(1).unwrap_or_default().to_string()).collect();
    assert_eq!(
        paths,
        [
            "connections[0].system_codes[0]",
            "connections[0].system_codes[1]",
            "connections[0].extra_clients[0]",
            "connections[0].extra_clients[1].client_id",
            "connections[0].extra_clients[1].client_secret",
        ],
        "{}",
        all.join("\n")
    );
}

#[test]
fn a_duplicate_name_is_found_even_in_a_rule_with_other_problems() {
    let text = with_connection("[[rules]]\nname = \"r\"\ncode = \"X\"\n[[rules]]\nname = \"r\"\ncode = 5\n");
    assert_problem(&text, "w.toml:12:8: rules[1].name", "duplicate rule name");
    assert_problem(&text, "w.toml:13:8: rules[1].code", "expected a string");
}

#[test]
fn value_ranges_and_header_names_are_checked() {
    assert_problem(
        &with_connection("requests_per_minute = 0\n"),
        "w.toml:8:23: connections[0].requests_per_minute",
        "between 1 and 100000",
    );
    assert_problem(
        &with_connection("request_timeout_ms = 5\n"),
        "w.toml:8:22: connections[0].request_timeout_ms",
        "between 100 and 120000",
    );
    assert_problem(
        &with_connection("[connections.intake]\napi_key_header = \"x key\"\n"),
        "w.toml:9:18: connections[0].intake.api_key_header",
        "not a valid HTTP header name",
    );
    assert_problem(
        &with_connection("[connections.intake]\nwebsocket = { enabled = true }\n"),
        "w.toml:9:13: connections[0].intake.websocket",
        "at least one queue",
    );
    assert_problem(&with_connection("kind2 = 1\n"), "w.toml:8:1", "unknown key `kind2`");
    assert_problem(
        &CONNECTION.replace("\"genesys\"", "\"cxone\""),
        "w.toml:5:10: connections[0].region",
        "`region` is for Genesys",
    );
    assert_problem(
        &with_connection("acw_detection = \"polling\"\n"),
        "w.toml:8:17",
        "only to connections with kind = \"cxone\"",
    );
    assert_problem("listen = \"localhost\"\n", "w.toml:1:10: listen", "invalid address");
}

// ---- the catalog check ----

fn catalog() -> Catalog {
    Catalog {
        codes: vec![
            CodeEntry { id: "c-ab".into(), name: "Abandoned".into() },
            CodeEntry { id: "c-res".into(), name: "Resolved".into() },
        ],
        queues: vec![
            QueueEntry {
                id: "q1".into(),
                name: "Support".into(),
                code_ids: vec!["c-ab".into(), "c-res".into()],
                acw_timeout_ms: None,
                acw_mode: None,
                acw: None,
            },
            QueueEntry {
                id: "q2".into(),
                name: "Sales".into(),
                code_ids: vec!["c-res".into()],
                acw_timeout_ms: None,
                acw_mode: None,
                acw: None,
            },
            QueueEntry {
                id: "q3".into(),
                name: "Support Tier 1".into(),
                code_ids: vec![],
                acw_timeout_ms: None,
                acw_mode: None,
                acw: None,
            },
        ],
    }
}

#[test]
fn the_catalog_check_finds_unknown_and_unassigned_codes_and_unknown_queues() {
    let text = with_connection(
        r#"
[[rules]]
name = "a"
code = "Abandoned"
when = { queue = { one_of = ["Support", "Sales", "Billing"] } }
[[rules]]
name = "b"
code = "Resolved"
when = { queue = { regex = "Support.*" } }
[[rules]]
name = "c"
code = "Nope"
when = { queue = { exists = false } }
[[rules]]
name = "d"
code = "Resolved"
[[rules]]
name = "elsewhere"
code = "Nope"
platform = "cxone"
"#,
    );
    let config = parse(&text).unwrap();
    let problems: Vec<String> = check_catalog(&config, "prod", &catalog()).iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "w.toml:9:1: rules[0] (\"a\"): queue \"Billing\" does not exist on connection \"prod\"",
            "w.toml:9:1: rules[0] (\"a\"): code \"Abandoned\" is not assigned to queue \"Sales\" on connection \"prod\"",
            "w.toml:13:1: rules[1] (\"b\"): code \"Resolved\" is not assigned to queue \"Support Tier 1\" on connection \"prod\"",
            "w.toml:17:1: rules[2] (\"c\"): code \"Nope\" does not exist on connection \"prod\"",
            "w.toml:21:1: rules[3] (\"d\"): code \"Resolved\" is not assigned to queue \"Support Tier 1\" on connection \"prod\"",
        ],
        "{}",
        problems.join("\n")
    );
}

// ---- robustness ----

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn parsing_a_damaged_example_never_panics(cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), "[a-z\\[\\]{}=\"'.,0-9 \n]{0,3}"), 1..4)) {
        let mut text = EXAMPLE.to_string();
        for (at, len, insert) in cuts {
            let start = at.index(text.len() + 1);
            let end = (start + len.index(8)).min(text.len());
            if text.is_char_boundary(start) && text.is_char_boundary(end) {
                text.replace_range(start..end, &insert);
            }
        }
        if let Err(e) = parse(&text) {
            prop_assert!(!e.is_empty());
            for p in &e {
                prop_assert!(!p.to_string().contains("s3cr3t"));
            }
        }
    }
}

#[test]
fn reconcile_settings_are_read_and_bounded() {
    let config = parse(&CONNECTION.replace(
        "client_id = \"client-1\"",
        "client_id = \"client-1\"\nreconcile_every_secs = 0\nreconcile_window_secs = 900",
    ))
    .unwrap();
    let prod = config.connection("prod").unwrap();
    assert_eq!(prod.reconcile_every, std::time::Duration::ZERO);
    assert_eq!(prod.reconcile_window, std::time::Duration::from_secs(900));
    let text = CONNECTION.replace("client_id = \"client-1\"", "client_id = \"client-1\"\nreconcile_window_secs = 5");
    assert_problem(&text, "", "must be between 60 and");
}

// ---- Standard Webhooks intake auth ----

fn parse_with_webhook_secret(text: &str, secret: &str) -> Result<Config, ConfigErrors> {
    let secrets = FakeSecrets::with_env(&[("GENESYS_CLIENT_SECRET", "s3cr3t-one"), ("HOOK", secret), ("KEY", "k")]);
    Config::parse_with(text, "w.toml", Path::new(""), &secrets)
}

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn intake_auth_defaults_to_the_api_key_and_standard_webhooks_reads_its_signing_secret() {
    let config = parse(&with_connection("")).unwrap();
    assert!(matches!(config.connections[0].intake.auth, IntakeAuth::ApiKey));
    let text = with_connection("[connections.intake]\nauth = \"standard_webhooks\"\nsigning_secret = \"env:HOOK\"\n");
    let config = parse_with_webhook_secret(&text, WHSEC).unwrap();
    match &config.connections[0].intake.auth {
        IntakeAuth::StandardWebhooks { signing_secret } => assert_eq!(signing_secret.key().len(), 24),
        other => panic!("{other:?}"),
    }
    assert!(!format!("{config:?}").contains("MfKQ9r8"), "the key is not in the config's Debug output");
}

#[test]
fn intake_auth_problems_are_located_and_never_echo_the_secret() {
    let problems_of = |rest: &str, secret: &str| -> Vec<String> {
        match parse_with_webhook_secret(&with_connection(rest), secret) {
            Ok(_) => panic!("accepted: {rest}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    };
    let has = |all: &[String], prefix: &str, fragment: &str| {
        assert!(
            all.iter().any(|p| p.starts_with(prefix) && p.contains(fragment)),
            "no {prefix:?} with {fragment:?} in:\n{}",
            all.join("\n")
        )
    };
    let all = problems_of("[connections.intake]\nauth = \"hmac\"\n", WHSEC);
    has(&all, "w.toml:9:8: connections[0].intake.auth", "expected \"api_key\" or \"standard_webhooks\"");
    let all = problems_of("[connections.intake]\nauth = \"standard_webhooks\"\n", WHSEC);
    has(&all, "w.toml:8:1: connections[0].intake", "needs `signing_secret`");
    let all = problems_of("[connections.intake]\nsigning_secret = \"env:HOOK\"\n", WHSEC);
    has(&all, "w.toml:9:18: connections[0].intake.signing_secret", "only with auth = \"standard_webhooks\"");
    let all = problems_of(
        "[connections.intake]\nauth = \"standard_webhooks\"\nsigning_secret = \"env:HOOK\"\napi_key = \"env:KEY\"\n",
        WHSEC,
    );
    has(&all, "w.toml:11:11: connections[0].intake.api_key", "not used with auth = \"standard_webhooks\"");
    let all =
        problems_of("[connections.intake]\nauth = \"standard_webhooks\"\nsigning_secret = \"whsec_abc\"\n", WHSEC);
    has(&all, "w.toml:10:18: connections[0].intake.signing_secret", "by reference");
    for (bad, fragment) in
        [("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with `whsec_`"), ("whsec_c2VjcmV0LXNob3J0", "24 to 64 bytes")]
    {
        let all =
            problems_of("[connections.intake]\nauth = \"standard_webhooks\"\nsigning_secret = \"env:HOOK\"\n", bad);
        has(&all, "w.toml:10:18: connections[0].intake.signing_secret", fragment);
        assert!(all.iter().all(|p| !p.contains(bad.trim_start_matches("whsec_"))), "{all:?}");
    }
}

// ---- CXone connections ----

const CXONE: &str = r#"
[[connections]]
name = "bu"
kind = "cxone"
client_id = "app"
client_secret = "literal:app-secret"
access_key_id = "key-id"
access_key_secret = "literal:key-secret"
"#;

#[test]
fn a_cxone_connection_defaults_to_the_global_auth_host_and_polling() {
    let config = parse(CXONE).unwrap();
    let c = &config.connections[0];
    assert_eq!(c.kind, Platform::Cxone);
    assert_eq!(c.endpoint.login_base.as_str(), crate::CXONE_AUTH_URL);
    let cx = c.cxone.as_ref().expect("CXone settings");
    assert_eq!(cx.access_key_id, "key-id");
    assert_eq!(cx.access_key_secret.expose(), "key-secret");
    assert_eq!(cx.acw_detection, crate::AcwDetection::Polling);
    assert_eq!(cx.poll_interval, std::time::Duration::from_millis(crate::DEFAULT_CXONE_POLL_INTERVAL_MS));
    assert_eq!(cx.agent_state_after_write, None);
}

#[test]
fn cxone_settings_are_validated_with_locations() {
    let text = format!(
        "{CXONE}acw_detection = \"webhooks\"\npoll_interval_ms = 5\nagent_state_after_write = \"Lunch\"\nextra_clients = []\n"
    );
    let problems = parse(&text).unwrap_err().to_string();
    assert!(
        problems.contains("w.toml:9:17: connections[0].acw_detection: unknown acw_detection \"webhooks\""),
        "{problems}"
    );
    assert!(problems.contains("w.toml:10:20: connections[0].poll_interval_ms"), "{problems}");
    assert!(problems.contains("connections[0].agent_state_after_write: unsupported"), "{problems}");
    assert!(problems.contains("connections[0].extra_clients: `extra_clients` is not available here"), "{problems}");
    let missing = parse(&CXONE.replace("access_key_secret = \"literal:key-secret\"\n", "")).unwrap_err().to_string();
    assert!(missing.contains("missing required key `access_key_secret`"), "{missing}");
    let sessions =
        parse(&format!("{CXONE}acw_detection = \"sessions\"\nagent_state_after_write = \"Available\"\n")).unwrap();
    let cx = sessions.connections[0].cxone.as_ref().unwrap();
    assert_eq!(cx.acw_detection, crate::AcwDetection::Sessions);
    assert_eq!(cx.agent_state_after_write.as_deref(), Some("Available"));
}

#[test]
fn one_rule_for_a_genesys_queue_and_a_cxone_skill_is_checked_against_both_catalogs_together() {
    let text = format!(
        "{CONNECTION}{CXONE}{}",
        r#"
[[rules]]
name = "support on both"
code = "Resolved"
when = { queue = { one_of = ["Support", "Support Phone"] } }
[[rules]]
name = "a queue nobody has"
code = "Resolved"
when = { queue = "Billing" }
"#
    );
    let config = parse(&text).unwrap();
    let genesys = catalog();
    let mut cxone = catalog();
    cxone.queues = vec![QueueEntry {
        id: "11".into(),
        name: "Support Phone".into(),
        code_ids: vec![],
        acw_timeout_ms: None,
        acw_mode: None,
        acw: None,
    }];
    let problems: Vec<String> =
        check_catalogs(&config, &[("prod", &genesys), ("bu", &cxone)]).iter().map(ToString::to_string).collect();
    // "Support" is only on prod and "Support Phone" only on bu: neither is missing. The code is not assigned to the
    // CXone skill (a problem there), and "Billing" is nowhere.
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("code \"Resolved\" is not assigned to queue \"Support Phone\" on connection \"bu\""));
    assert!(problems[1].contains("queue \"Billing\" does not exist on connection \"prod, bu\""));
    // Checked one connection at a time, each name the other connection holds would be reported missing.
    assert_eq!(check_catalog(&config, "prod", &genesys).len(), 2);
}

#[test]
fn the_store_is_sqlite_by_default_or_postgres_with_the_password_by_reference() {
    assert_eq!(parse("").unwrap().store, StoreConfig::Sqlite);
    assert_eq!(parse("[store]\nurl = \"sqlite\"\n").unwrap().store, StoreConfig::Sqlite);
    let text = "[store]\nurl = \"postgres://wrapup@db.internal:5433/wrapup?sslmode=require\"\n\
                password = \"env:WRAPUP_ADMIN_TOKEN\"\n";
    let store = parse(text).unwrap().store;
    assert_eq!(store.describe(), "postgres://wrapup@db.internal:5433/wrapup?sslmode=require");
    assert_eq!(
        store.connect_url().unwrap(),
        "postgres://wrapup:admin-token-value@db.internal:5433/wrapup?sslmode=require"
    );
    assert!(!format!("{store:?}").contains("admin-token-value"), "{store:?}");
    let bare = parse("[store]\nurl = \"postgresql://db/wrapup\"\n").unwrap().store;
    assert_eq!(bare.connect_url().unwrap(), "postgresql://db/wrapup");
}

#[test]
fn a_store_url_with_a_password_or_of_another_kind_is_refused_without_quoting_it() {
    let all = problems("[store]\nurl = \"postgres://wrapup:hunter2@db/wrapup\"\n");
    assert!(all.iter().any(|p| p.starts_with("w.toml:2:7: store.url: must not hold a password")), "{all:?}");
    assert!(all.iter().all(|p| !p.contains("hunter2")), "{all:?}");
    assert_problem("[store]\nurl = \"mysql://db/wrapup\"\n", "w.toml:2:7: store.url", "`postgres://");
    assert_problem("[store]\nurl = \"postgres:///wrapup\"\n", "w.toml:2:7: store.url", "needs a host");
    assert_problem(
        "[store]\nurl = \"sqlite\"\npassword = \"env:WRAPUP_ADMIN_TOKEN\"\n",
        "w.toml:3:",
        "only a PostgreSQL",
    );
    assert_problem("[store]\npassword = \"env:WRAPUP_ADMIN_TOKEN\"\n", "w.toml:1:1: store", "missing key `url`");
    assert_problem("[store]\nurl = \"sqlite\"\nhost = \"x\"\n", "w.toml:3:1: store.host", "unknown key");
    assert_problem("[store]\nurl = \"postgres://db/w\"\npassword = \"env:NOPE\"\n", "w.toml:3:", "NOPE");
}

// ---- the lookup ----

#[test]
fn the_lookup_reads_its_fallback_and_key_and_genesys_defaults_to_the_intake_auth() {
    let plain = parse(CONNECTION).unwrap();
    assert_eq!(plain.connections[0].lookup.fallback_code, None);
    assert!(plain.connections[0].lookup.api_key.is_none(), "without a key of its own the intake's auth is used");
    let text = with_connection(
        "[connections.lookup]\nfallback_code = \"Other\"\napi_key = \"env:WRAPUP_INTAKE_KEY\"\napi_key_header = \"X-Flow-Key\"\n",
    );
    let lookup = parse(&text).unwrap().connections[0].lookup.clone();
    assert_eq!(lookup.fallback_code.as_deref(), Some("Other"));
    let (header, key) = lookup.api_key.expect("a key of its own");
    assert_eq!((header.as_str(), key.expose()), ("x-flow-key", "intake-key-value"));
    let default_header = with_connection("[connections.lookup]\napi_key = \"env:WRAPUP_INTAKE_KEY\"\n");
    assert_eq!(
        parse(&default_header).unwrap().connections[0].lookup.api_key.clone().unwrap().0,
        DEFAULT_INTAKE_KEY_HEADER
    );
    let cxone =
        format!("{CXONE}[connections.lookup]\nfallback_code = \"Other\"\napi_key = \"env:WRAPUP_INTAKE_KEY\"\n");
    assert_eq!(parse(&cxone).unwrap().connections[0].lookup.fallback_code.as_deref(), Some("Other"));
}

#[test]
fn lookup_problems_are_located() {
    assert_problem(
        &with_connection("[connections.lookup]\nfallback_code = \"  \"\n"),
        "w.toml:9:17: connections[0].lookup.fallback_code",
        "must not be empty",
    );
    assert_problem(
        &with_connection("[connections.lookup]\nfallback = \"Other\"\n"),
        "w.toml:9:1: connections[0].lookup.fallback",
        "unknown key `fallback`",
    );
    assert_problem(
        &with_connection("[connections.lookup]\napi_key_header = \"x-k\"\n"),
        "w.toml:8:1: connections[0].lookup",
        "`api_key_header` names the header of `api_key`, which is not set",
    );
    assert_problem(
        &with_connection("[connections.lookup]\napi_key = \"plain\"\n"),
        "w.toml:9:11: connections[0].lookup.api_key",
        "",
    );
    assert_problem(
        &format!("{CXONE}[connections.lookup]\nfallback_code = \"Other\"\n"),
        "w.toml:",
        "a CXone connection's lookup needs `api_key`",
    );
}

#[test]
fn the_lookup_fallback_is_checked_against_the_live_catalog() {
    let good = parse(&with_connection("[connections.lookup]\nfallback_code = \"resolved\"\n")).unwrap();
    assert!(check_lookup_fallbacks(&good, &[("prod", &catalog())]).is_empty(), "names match like rules' codes do");
    let bad = parse(&with_connection("[connections.lookup]\nfallback_code = \"Other\"\n")).unwrap();
    assert_eq!(
        check_lookup_fallbacks(&bad, &[("prod", &catalog())]),
        ["connections \"prod\": lookup.fallback_code \"Other\" does not exist in the live catalog of the connection"]
    );
}

#[test]
fn rules_that_let_a_crm_decide_and_their_hooks_are_read() {
    let text = with_connection(
        r#"[connections.decisions]

[[decision_hooks]]
name = "crm"
url = "http://127.0.0.1:9000/hooks/crm"
secret = "env:HOOK"
timeout_ms = 1500

[[rules]]
name = "crm decides"
code = "Resolved"
decide = { crm = true, wait = "20s" }

[[rules]]
name = "hook decides"
code = "Resolved"
decide = { hook = "crm", wait = "5s", fallback = "Other" }
"#,
    );
    let config = parse_with_webhook_secret(&text, WHSEC).unwrap();
    assert!(config.connections[0].decisions.as_ref().is_some_and(|d| d.api_key.is_none()));
    let hook = &config.decision_hooks[0];
    assert_eq!((hook.name.as_str(), hook.timeout), ("crm", std::time::Duration::from_millis(1500)));
    let rules = config.rules.rules();
    assert_eq!(
        rules[0].decide,
        Some(DecideSpec { from: DecideFrom::Crm, wait: jiff::SignedDuration::from_secs(20), fallback: Fallback::Rule })
    );
    assert_eq!(
        rules[1].decide,
        Some(DecideSpec {
            from: DecideFrom::Hook("crm".into()),
            wait: jiff::SignedDuration::from_secs(5),
            fallback: Fallback::Code("Other".into()),
        })
    );
    assert!(!format!("{config:?}").contains("MfKQ9r8"), "the hook's key is not in the config's Debug output");
}

#[test]
fn decide_problems_are_located() {
    let rule = |decide: &str| with_connection(&format!("[[rules]]\nname = \"r\"\ncode = \"C\"\ndecide = {decide}\n"));
    assert_problem(&rule("{ crm = true }"), "w.toml:11:10: rules[0].decide", "missing required key `wait`");
    assert_problem(&rule("{ wait = \"5s\" }"), "w.toml:11:10: rules[0].decide", "say who decides");
    assert_problem(
        &rule("{ crm = true, hook = \"x\", wait = \"5s\" }"),
        "w.toml:11:",
        "not configured in [[decision_hooks]]",
    );
    assert_problem(&rule("{ hook = \"nope\", wait = \"5s\" }"), "w.toml:11:19: rules[0].decide.hook", "known: none");
    assert_problem(&rule("{ crm = true, wait = \"2h\" }"), "w.toml:11:", "at most 1 h");
    assert_problem(&rule("{ crm = true, wait = \"5s\", later = 1 }"), "w.toml:11:", "unknown key `later`");
    assert_problem(
        &format!("{CXONE}[connections.decisions]\n"),
        "w.toml:",
        "a CXone connection's decisions need `api_key`",
    );
    let hook = |rest: &str| with_connection(&format!("[[decision_hooks]]\nname = \"h\"\n{rest}"));
    assert_problem(&hook("url = \"ftp://x\"\nsecret = \"env:KEY\"\n"), "w.toml:10:7: decision_hooks[0].url", "http(s)");
    assert_problem(&hook("url = \"http://x\"\n"), "w.toml:8:1: decision_hooks[0]", "missing required key `secret`");
}

#[test]
fn a_decide_fallback_code_is_checked_against_the_live_catalog_like_the_rules_code() {
    let text = with_connection(
        r#"[connections.decisions]

[[rules]]
name = "crm"
code = "Resolved"
decide = { crm = true, wait = "20s", fallback = "Abandoned" }
[rules.when]
queue = "Sales"

[[rules]]
name = "crm elsewhere"
code = "Resolved"
decide = { crm = true, wait = "20s", fallback = "No such code" }
[rules.when]
queue = "Support"
"#,
    );
    let config = parse(&text).unwrap();
    let problems: Vec<String> = check_catalog(&config, "prod", &catalog()).iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("Abandoned") && problems[0].contains("Sales"), "{problems:#?}");
    assert!(problems[1].contains("No such code"), "{problems:#?}");
}

#[test]
fn a_rules_file_replaces_the_rules_and_is_checked_against_the_configs_connections() {
    let config = parse(&with_connection("[[rules]]\nname = \"old\"\ncode = \"A\"\n")).unwrap();
    let candidate =
        config.with_rules_text("[[rules]]\nname = \"new\"\ncode = \"B\"\nconnection = \"prod\"\n", "r.toml").unwrap();
    assert_eq!(candidate.rules.rules().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["new"]);
    assert_eq!(candidate.rule_location(0).unwrap().to_string(), "r.toml:1:1");
    assert_eq!(candidate.connections.len(), 1);

    let errors = config
        .with_rules_text(
            "[[rules]]\nname = \"x\"\ncode = \"B\"\nconnection = \"dev\"\n\n[[rules]]\nname = \"y\"\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
    assert!(errors.contains("r.toml:4:14: rules[0].connection: rule names connection \"dev\""), "{errors}");
    assert!(errors.contains("r.toml:6:1: rules[1]: missing required key `code`"), "{errors}");
    let unknown = config.with_rules_text("rule = 1\n", "r.toml").unwrap_err().to_string();
    assert!(unknown.contains("unknown key `rule`"), "{unknown}");
}

#[test]
fn a_whole_config_file_serves_as_a_rules_file() {
    let text = with_connection("[[rules]]\nname = \"r\"\ncode = \"A\"\n");
    let config = parse(&text).unwrap();
    let candidate = config.with_rules_text(&text, "w.toml").unwrap();
    assert_eq!(candidate.rules.version(), config.rules.version());
}

const SINK_SECRET: &str = "literal:whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn sinks_are_read_with_their_filter_mapping_and_defaults() {
    let text = with_connection(&format!(
        r#"
[[sinks]]
name = "crm"
url = "https://crm.example.com/hooks"
secret = "{SINK_SECRET}"
filter = {{ connections = ["prod"], outcomes = ["applied", "agent_won"], queues = ["Sales"] }}
mapping = {{ "Sale" = "SOLD", "No Sale" = "NOT_SOLD" }}
max_age = "48h"
timeout = "5s"

[[sinks]]
name = "audit"
url = "http://127.0.0.1:9000/"
secret = "{SINK_SECRET}"
"#
    ));
    let config = parse(&text).unwrap();
    let crm = &config.sinks[0];
    assert_eq!((crm.name.as_str(), crm.url.as_str()), ("crm", "https://crm.example.com/hooks"));
    assert_eq!(crm.secret.key().len(), 24);
    assert_eq!(crm.mapping.get("No Sale").map(String::as_str), Some("NOT_SOLD"));
    assert_eq!(crm.max_age, std::time::Duration::from_secs(48 * 3600));
    assert_eq!(crm.timeout, std::time::Duration::from_secs(5));
    assert!(crm.filter.wants("prod", wrapup_core::Outcome::Applied, Some("Sales")));
    assert!(!crm.filter.wants("prod", wrapup_core::Outcome::Expired, Some("Sales")));
    assert!(!crm.filter.wants("prod", wrapup_core::Outcome::Applied, Some("Support")));
    assert!(!crm.filter.wants("prod", wrapup_core::Outcome::Applied, None));
    let audit = &config.sinks[1];
    assert_eq!(audit.max_age, DEFAULT_SINK_MAX_AGE);
    assert_eq!(audit.concurrency, DEFAULT_SINK_CONCURRENCY);
    assert!(audit.filter.wants("anything", wrapup_core::Outcome::Review, None));
}

#[test]
fn sink_problems_are_reported_with_their_location_and_never_echo_the_secret() {
    let sink = |body: &str| with_connection(&format!("\n[[sinks]]\nname = \"crm\"\n{body}\n"));
    let url = "url = \"https://crm.example.com/\"";
    let secret = format!("secret = \"{SINK_SECRET}\"");
    assert_problem(&sink(&secret), "w.toml:", "missing required key `url`");
    assert_problem(&sink(url), "w.toml:", "missing required key `secret`");
    assert_problem(&sink(&format!("{url}\n{secret}\ncolour = 1")), "w.toml:13:1: sinks[0].colour", "unknown key");
    assert_problem(&sink(&format!("url = \"ftp://x/\"\n{secret}")), "w.toml:11:7: sinks[0].url", "http");
    let plain = "secret = \"literal:not-a-whsec-value\"";
    let all = problems(&sink(&format!("{url}\n{plain}")));
    assert!(all.iter().any(|p| p.contains("sinks[0].secret") && p.contains("whsec_")), "{all:?}");
    assert!(all.iter().all(|p| !p.contains("not-a-whsec-value")), "{all:?}");
    let filter = format!("{url}\n{secret}\nfilter = {{ connections = [\"dev\"], outcomes = [\"won\"], queues = [] }}");
    let all = problems(&sink(&filter));
    for expected in [
        "sinks[0].filter.connections[0]: no connection is named \"dev\"",
        "sinks[0].filter.outcomes[0]",
        "sinks[0].filter.queues: an empty list",
    ] {
        assert!(all.iter().any(|p| p.contains(expected)), "{expected} not in {all:#?}");
    }
    assert_problem(&sink(&format!("{url}\n{secret}\nmax_age = \"200h\"")), "w.toml:", "longer than 7 days");
    assert_problem(&sink(&format!("{url}\n{secret}\nmapping = {{ Sale = 1 }}")), "w.toml:", "sinks[0].mapping.Sale");
    let twice = format!("{}\n[[sinks]]\nname = \"crm\"\n{url}\n{secret}\n", sink(&format!("{url}\n{secret}")));
    assert_problem(&twice, "w.toml:", "duplicate sink name");
}
