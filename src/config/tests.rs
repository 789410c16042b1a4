use super::*;

const GOOD: &str = r#"
data_dir = "/var/lib/tailbeat"

[[input]]
name = "app"
paths = ["/var/log/app/*.log"]

[sink]
type = "file"
path = "/tmp/out.tbf"
"#;

fn err(text: &str) -> ConfigError {
    Config::parse(text).expect_err("config should be rejected")
}

/// The key of an error, as the CLI prints it.
fn key_of(e: &ConfigError) -> Option<String> {
    e.key.as_ref().map(ToString::to_string)
}

#[test]
fn the_demo_config_is_valid() {
    let c = Config::parse(DEMO).unwrap();
    assert_eq!(c.inputs[0].start_at, StartAt::Head);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.batch, Batch::default());
    assert_eq!(c.spool.on_full, OnFull::Block);
    assert_eq!(c.inputs[0].max_line_bytes, Size(16384));
    assert_eq!(c.inputs[0].start_at, StartAt::Tail);
}

#[test]
fn unknown_top_level_key_is_named_with_its_line() {
    let e = err(&format!("colour = \"blue\"\n{GOOD}"));
    assert_eq!(e.line, Some(1));
    assert_eq!(key_of(&e).as_deref(), Some("colour"));
    assert!(e.msg.contains("unknown field `colour`"), "{e}");
}

#[test]
fn unknown_key_in_a_table() {
    let e = err(&format!("{GOOD}\n[spool]\nmax_byte = \"1MiB\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("spool.max_byte"));
    assert_eq!(e.line, Some(13));
}

#[test]
fn unknown_key_in_the_second_input() {
    let text = GOOD.replace(
        "[sink]",
        "[[input]]\nname = \"b\"\npaths = [\"/x\"]\nstart = \"head\"\n\n[sink]",
    );
    let e = err(&text);
    assert_eq!(key_of(&e).as_deref(), Some("input[1].start"), "{e}");
}

#[test]
fn bad_size_says_what_it_expected_and_got() {
    let e = err(&format!("{GOOD}\n[spool]\nmax_bytes = \"lots\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("spool.max_bytes"));
    assert!(
        e.msg.contains(r#"expected a size like 8MiB, got "lots""#),
        "{e}"
    );
}

#[test]
fn bad_duration() {
    let e = err(&format!("{GOOD}\n[batch]\nlinger = \"soon\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("batch.linger"));
    assert!(e.msg.contains("soon"), "{e}");
}

#[test]
#[cfg(all(feature = "lz4", feature = "deflate"))]
fn batch_compression_names_a_codec() {
    use crate::frame::Codec;
    assert_eq!(Config::parse(GOOD).unwrap().batch.compression, Codec::Lz4);
    for (name, codec) in [
        ("none", Codec::None),
        ("deflate", Codec::Deflate),
        ("lz4", Codec::Lz4),
    ] {
        let c = Config::parse(&format!("{GOOD}\n[batch]\ncompression = \"{name}\"\n")).unwrap();
        assert_eq!(c.batch.compression, codec);
    }
    let e = err(&format!("{GOOD}\n[batch]\ncompression = \"zstd\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("batch.compression"));
    assert!(e.msg.contains("zstd") && e.msg.contains("lz4"), "{e}");
}

/// A build without a codec (cargo features `lz4`, `deflate`) refuses it by name rather than
/// storing frames it says are compressed plain; CI runs this in the MQTT-only build.
#[test]
fn a_codec_left_out_of_the_build_is_refused_by_name() {
    use crate::frame::Codec;
    for codec in [Codec::Deflate, Codec::Lz4] {
        let text = format!("{GOOD}\n[batch]\ncompression = \"{codec}\"\n");
        if codec.built_in() {
            assert_eq!(Config::parse(&text).unwrap().batch.compression, codec);
        } else {
            let e = err(&text);
            assert_eq!(key_of(&e).as_deref(), Some("batch.compression"));
            assert!(e.msg.contains("left out of this build"), "{e}");
        }
    }
    let expected = if cfg!(feature = "lz4") {
        Codec::Lz4
    } else {
        Codec::None
    };
    assert_eq!(Config::parse(GOOD).unwrap().batch.compression, expected);
}

#[test]
fn bad_enum_value() {
    let e = err(&format!("{GOOD}\n[spool]\non_full = \"panic\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("spool.on_full"));
    assert!(e.msg.contains("block"), "{e}");
}

#[test]
fn unknown_sink_type() {
    let e = err(&GOOD.replace("type = \"file\"", "type = \"ftp\""));
    assert!(e.msg.contains("ftp"), "{e}");
}

#[test]
fn unknown_key_in_sink() {
    let e = err(&GOOD.replace("type = \"file\"", "type = \"file\"\nmode = 1"));
    assert!(e.msg.contains("mode"), "{e}");
}

#[test]
fn missing_required_key() {
    let e = err(&GOOD.replace("data_dir = \"/var/lib/tailbeat\"", ""));
    assert!(e.msg.contains("data_dir"), "{e}");
}

#[test]
fn validation_errors_name_the_key_and_its_line() {
    let e = err(&format!("{GOOD}\n[spool]\nmax_bytes = \"1MiB\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("spool.max_bytes"));
    assert_eq!(e.line, Some(13));
    assert!(e.msg.contains("two segments"), "{e}");
    let e = err(&GOOD.replace(
        "name = \"app\"",
        "name = \"app\"\nmax_line_bytes = \"1MiB\"",
    ));
    assert_eq!(key_of(&e).as_deref(), Some("input[0].max_line_bytes"));
    assert_eq!(e.line, Some(6));
    let e = err(&format!("log_level = \"loud\"\n{GOOD}"));
    assert_eq!(key_of(&e).as_deref(), Some("log_level"));
    assert_eq!(e.line, Some(1));
    assert!(e.msg.contains("\"loud\""), "{e}");
}

#[test]
fn duplicate_input_names_are_rejected() {
    let text = GOOD.replace(
        "[sink]",
        "[[input]]\nname = \"app\"\npaths = [\"/x\"]\n\n[sink]",
    );
    let e = err(&text);
    assert_eq!(key_of(&e).as_deref(), Some("input[1].name"));
    assert_eq!(e.line, Some(9));
}

#[test]
fn display_is_one_line_with_file_line_and_key() {
    let mut e = err(&format!("{GOOD}\n[spool]\nmax_bytes = \"lots\"\n"));
    e.path = Some("/etc/tailbeat.toml".into());
    assert_eq!(
        e.to_string(),
        "/etc/tailbeat.toml:13: spool.max_bytes: expected a size like 8MiB, got \"lots\""
    );
}

fn mqtt(extra: &str) -> String {
    GOOD.replace(
        "type = \"file\"\npath = \"/tmp/out.tbf\"",
        &format!("type = \"mqtt\"\n{extra}"),
    )
}

#[test]
fn mqtt_sink_defaults_and_url_forms() {
    let c = Config::parse(&mqtt("url = \"mqtt://127.0.0.1:1884\"")).unwrap();
    let Sink::Mqtt(m) = &c.sink else { panic!() };
    assert_eq!(m.endpoints()[0].port, 1884);
    assert_eq!(m.topic, "tailbeat/{instance}/frames");
    assert_eq!(m.window, 16);
    let c = Config::parse(&mqtt(
        "url = \"mqtt://a:1\"\nfailover = [\"mqtt://b:2\", \"mqtt://[::1]\"]",
    ))
    .unwrap();
    let Sink::Mqtt(m) = &c.sink else { panic!() };
    let e: Vec<String> = m.endpoints().iter().map(|e| e.to_string()).collect();
    assert_eq!(e, ["mqtt://a:1", "mqtt://b:2", "mqtt://[::1]:1883"]);
}

#[test]
fn mqtt_sink_errors_name_the_key() {
    for (extra, key, what) in [
        ("url = \"tcp://x\"", "sink.url", "expected mqtt://host:port"),
        (
            "url = \"mqtts://x\"\n[sink.tls]\nclient_cert = \"/c.pem\"",
            "sink.tls.client_cert",
            "go together",
        ),
        ("url = \"mqtt://x:port\"", "sink.url", "bad port"),
        (
            "url = \"mqtt://x\"\nfailover = [\"mqtt://y\", \"tcp://z\"]",
            "sink.failover[1]",
            "expected mqtt://host:port",
        ),
        (
            "url = \"mqtt://x\"\ntopic = \"a/#\"",
            "sink.topic",
            "wildcards",
        ),
        (
            "url = \"mqtt://x\"\nwindow = 0",
            "sink.window",
            "between 1 and 1024",
        ),
        (
            "url = \"mqtt://x\"\nmax_packet_bytes = \"8KiB\"",
            "sink.max_packet_bytes",
            "too small",
        ),
        (
            "url = \"mqtt://x\"\nqos = 2",
            "sink.qos",
            "unknown field `qos`",
        ),
    ] {
        let e = err(&mqtt(extra));
        assert_eq!(key_of(&e).as_deref(), Some(key), "{extra}: {e}");
        assert!(e.msg.contains(what), "{extra}: {e}");
    }
}

/// Every secret a config can hold, each its own text, in configs that parse.
const SECRETS: [&str; 6] = [
    "tok-Q7f1", "tok-Z2k9", "pw-M4x8", "pw-R5c3", "pw-W6v0", "tok-P1n4",
];

fn with_secrets() -> [Config; 3] {
    let http_sink = |auth: &str| {
        GOOD.replace(
            "type = \"file\"\npath = \"/tmp/out.tbf\"",
            &format!("type = \"http\"\nurl = \"https://h/x\"\n{auth}"),
        )
    };
    let [s0, s1, s2, s3, s4, _] = SECRETS;
    [
        format!(
            "{}\n[fleet]\nserver = \"https://cs/\"\ntoken = \"{s1}\"\n",
            http_sink(&format!("token = \"{s0}\""))
        ),
        format!(
            "{}\n[fleet]\nserver = \"mqtts://b\"\nusername = \"u\"\npassword = \"{s3}\"\n",
            http_sink(&format!("username = \"u\"\npassword = \"{s2}\""))
        ),
        mqtt(&format!(
            "url = \"mqtt://x\"\nusername = \"u\"\npassword = \"{s4}\""
        )),
    ]
    .map(|t| Config::parse(&t).unwrap())
}

/// Every config type that holds a secret, formatted as logs and errors would: the secret
/// never shows, and `expose` still gives it back (so the test is about real secrets).
#[test]
fn secrets_never_show_when_a_config_is_formatted() {
    let [a, b, c] = with_secrets();
    let mut shown = Vec::new();
    let mut exposed = Vec::new();
    for cfg in [&a, &b, &c] {
        shown.push(format!("{cfg:?} {:?} {:#?}", cfg.sink, cfg.fleet));
        match &cfg.sink {
            Sink::Http(h) => {
                shown.push(format!("{h:?}"));
                exposed.extend([&h.token, &h.password].into_iter().flatten());
            }
            Sink::Mqtt(m) => {
                shown.push(format!("{m:?}"));
                exposed.extend(&m.password);
            }
            _ => unreachable!(),
        }
        if let Some(f) = &cfg.fleet {
            shown.push(format!("{f:?}"));
            exposed.extend([&f.token, &f.password].into_iter().flatten());
        }
    }
    // A pipeline config from the fleet, with a sink of its own, as parsed, as run, and as
    // kept with the fleet's configs (the text saved in fleet.state).
    let detail = format!(
        "paths = [\"/p\"]\n[sink]\ntype = \"http\"\nurl = \"http://h/p\"\ntoken = \"{}\"\n",
        SECRETS[5]
    );
    let fp = parse_pipeline("p", &detail).unwrap();
    shown.push(format!("{fp:?}"));
    let own = fp.own(&a.batch, &a.spool, &a.sink).unwrap();
    shown.push(format!("{own:?} {:?}", own.sink));
    let Sink::Http(h) = &own.sink else { panic!() };
    exposed.extend(&h.token);
    let mut remote = crate::control::remote::Remote::default();
    let cfg = remote
        .update(
            &a,
            crate::control::remote::Kind::Pipeline,
            "p",
            1,
            detail.as_bytes(),
        )
        .unwrap();
    shown.push(format!("{cfg:?} {remote:?} {remote:#?}"));

    let mut exposed: Vec<&str> = exposed.iter().map(|s| s.expose()).collect();
    exposed.sort();
    let mut want = SECRETS.to_vec();
    want.sort();
    assert_eq!(exposed, want);
    for text in &shown {
        assert!(text.contains("Secret(***)"), "{text}");
        for s in SECRETS {
            assert!(!text.contains(s), "{s} in {text}");
        }
    }
}

/// A secret in the wrong type is an error that names the key and its type, not its value
/// (config errors are printed, logged, and sent to the fleet as FAILED statuses).
#[test]
fn a_secret_of_the_wrong_type_is_not_echoed() {
    for (value, what) in [
        ("31415926", "integer"),
        ("true", "boolean"),
        ("2.71828", "float"),
    ] {
        // In `[sink]` and in `[fleet]`.
        let sink = mqtt(&format!(
            "url = \"mqtt://x\"\nusername = \"u\"\npassword = {value}"
        ));
        let fleet = format!("{GOOD}\n[fleet]\nserver = \"http://cs\"\ntoken = {value}\n");
        for (text, key) in [(sink, "sink.password: "), (fleet, "fleet.token: ")] {
            let e = err(&text).to_string();
            assert!(e.contains(key) && e.contains(what), "{e}");
            assert!(!e.contains(value), "{e}");
        }
    }
}

/// URLs show in logs (the sink's, the fleet server's): credentials in them are refused
/// without being echoed.
#[test]
fn credentials_in_a_url_are_refused_without_being_echoed() {
    let http = |k: &str, v: &str| {
        GOOD.replace(
            "type = \"file\"\npath = \"/tmp/out.tbf\"",
            &format!("type = \"http\"\nurl = \"http://h/x\"\n{k} = {v}"),
        )
    };
    for (text, key) in [
        (
            http("failback_after", "\"1m\"").replace("http://h/x", "https://u:hunter2@h/x"),
            "sink.url",
        ),
        (
            http("failover", "[\"http://u:hunter2@g/x\"]"),
            "sink.failover",
        ),
        (mqtt("url = \"mqtt://u:hunter2@b\""), "sink.url"),
        (
            format!("{GOOD}\n[fleet]\nserver = \"https://u:hunter2@cs\"\n"),
            "fleet.server",
        ),
    ] {
        let e = err(&text).to_string();
        assert!(e.contains(key) && e.contains("credentials"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn a_pipeline_detail_splits_at_its_first_table_and_keeps_its_lines() {
    // A multi-line array above the tables, a comment after a header, a sub-table.
    let text = "paths = [\n  \"/a/*.log\",\n  \"/b/*.log\",\n]\n[batch] # its own\nmax_lines = 5\n\
                [sink]\ntype = \"mqtt\"\nurl = \"mqtts://127.0.0.1\"\n[sink.tls]\ninsecure = true\n";
    match parse_pipeline("p", text).unwrap() {
        FleetPipeline::Own {
            input, batch, sink, ..
        } => {
            assert_eq!((input.name.as_str(), input.paths.len()), ("p", 2));
            assert_eq!(batch.unwrap().max_lines, 5);
            assert!(matches!(sink, Some(Sink::Mqtt(m)) if m.tls.insecure));
        }
        other => panic!("{other:?}"),
    }
    let e = parse_pipeline("p", "paths = [\"/a\"]\n\n[bacth]\nmax_lines = 5\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.msg.contains("bacth"), "{e}");
    let e = parse_pipeline("p", "paths = [\"/a\"]\n[batch]\nmax_lines = \"x\"\n").unwrap_err();
    assert_eq!(
        (e.line, key_of(&e).as_deref()),
        (Some(3), Some("batch.max_lines")),
        "{e}"
    );
    let e = parse_pipeline("p", "# about\npaths = 3\n").unwrap_err();
    assert_eq!(
        (e.line, key_of(&e).as_deref()),
        (Some(2), Some("paths")),
        "{e}"
    );
}

#[test]
fn a_missing_table_is_named_by_its_key_not_by_a_comment() {
    let no_sink = &GOOD[..GOOD.find("[sink]").unwrap()];
    for text in [format!("# about this file\n{no_sink}"), no_sink.to_string()] {
        let e = err(&text);
        assert_eq!((e.line, key_of(&e).as_deref()), (None, Some("sink")), "{e}");
        assert_eq!(e.to_string(), "sink: missing field `sink`");
    }
    // A key missing from a table: the table's header, and the key inside it.
    let e = err(&GOOD.replace("paths = [\"/var/log/app/*.log\"]", "# no paths"));
    assert_eq!(
        (e.line, key_of(&e).as_deref()),
        (Some(4), Some("input[0].paths")),
        "{e}"
    );
    // An error on a comment line never takes the comment for a key.
    let e = err(&format!(
        "{GOOD}\n[spool]\n# the size\nmax_bytes = \"lots\"\n"
    ));
    assert_eq!(key_of(&e).as_deref(), Some("spool.max_bytes"), "{e}");
}

#[test]
fn a_dotted_key_of_too_many_parts_says_so() {
    let e = err(&format!("{GOOD}\n{} = 1\n", vec!["a"; 60_000].join(".")));
    assert_eq!(e.msg, "a dotted key of too many parts", "{e}");
}

#[test]
fn text_that_is_not_utf8_is_named_by_line_and_column() {
    let e = from_utf8(b"a = 1\nb = \"\xc3\xa9\xff\"\n").unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(7)), "{e}");
    assert_eq!(
        e.to_string(),
        "line 2:7: not UTF-8 (byte 0xff): a config file must be UTF-8 text"
    );
    assert_eq!(from_utf8(b"a = 1\n").unwrap(), "a = 1\n");
}

#[test]
fn echoed_values_are_bounded_everywhere() {
    let big = "y".repeat(100_000);
    let head = &big[..64];
    let clipped = format!("\"{head}\"… (100000 bytes)");
    // Validation (the local file and, through `validate`, the fleet's configs).
    let e = err(&format!("log_level = \"{big}\"\n{GOOD}"));
    assert!(e.msg.ends_with(&format!("got {clipped}")), "{e}");
    assert_eq!(key_of(&e).as_deref(), Some("log_level"));
    let why = big.parse::<crate::config::LogLevel>().unwrap_err();
    assert!(why.len() < 200, "{why}");
    let e = err(&mqtt(&format!("url = \"mqtt://{big}:x\"")));
    assert!(e.to_string().len() < 300, "{e}");
    // A fleet pipeline detail: serde's own message, and a name used twice.
    let e = parse_pipeline("p", &format!("paths = [\"/a\"]\nstart_at = \"{big}\"\n")).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "line 2: start_at: unknown variant \"{head}\"… (100000 bytes), expected"
        )),
        "{shown}"
    );
    assert!(shown.len() < 200, "{shown}");
    // A fleet pipeline's sink URL: parsed with its detail, named by its key and line.
    let e = parse_pipeline(
        "p",
        &format!("paths = [\"/a\"]\n[sink]\ntype = \"mqtt\"\nurl = \"{big}\"\n"),
    )
    .unwrap_err();
    assert_eq!(e.key, Some(KeyPath::dotted("sink.url")));
    assert_eq!(e.line, Some(4));
    assert!(e.to_string().len() < 200, "{e}");
    // An instance config.
    let e = InstanceConfig::parse(&format!("stats_interval = \"{big}\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("line 1: stats_interval: expected a duration like 5s or 250ms, got {clipped}")
    );
    // A huge key, and a message with no quotes to cut at.
    let e = InstanceConfig::parse(&format!("{big} = 1\n")).unwrap_err();
    assert!(e.to_string().len() < 400, "{e}");
    let e = ConfigError {
        path: None,
        line: None,
        column: None,
        key: None,
        msg: big.clone(),
    };
    assert!(e.to_string().len() < 1100, "{}", e.to_string().len());
}

/// The fleet's code finds which pipeline an error is about by the path's segments.
#[test]
fn a_key_path_is_segments_rendered_as_toml_writes_them() {
    let k = KeyPath::dotted("pipeline")
        .index(2)
        .then("sink.tls.client_cert");
    assert_eq!(k.to_string(), "pipeline[2].sink.tls.client_cert");
    let (j, rest) = k.in_array("pipeline").unwrap();
    assert_eq!(
        (j, rest.to_string()),
        (2, "sink.tls.client_cert".to_string())
    );
    assert_eq!(k.in_array("input"), None);
    assert_eq!(KeyPath::dotted("spool.max_bytes").in_array("spool"), None);
}

/// Issue 12: `[alerts]` thresholds are each optional, read in their units; unknown keys and
/// bad values are named with their line.
#[test]
fn alerts_thresholds_are_optional_and_read_in_their_units() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.alerts, Alerts::default());
    assert_eq!(c.alerts.thresholds().read_to_ack_p99_ms, None);
    let c = Config::parse(&format!(
        "{GOOD}\n[alerts]\nread_to_ack_p99 = \"5s\"\nbacklog_bytes = \"64MiB\"\noldest_unacked = \"10m\"\nfree_disk = \"100MiB\"\nhold = \"1s\"\nwindow = \"6s\"\n"
    ))
    .unwrap();
    let t = c.alerts.thresholds();
    assert_eq!(t.read_to_ack_p99_ms, Some(5000));
    assert_eq!(t.backlog_bytes, Some(64 << 20));
    assert_eq!(t.oldest_unacked_ms, Some(600_000));
    assert_eq!(t.free_disk, Some(100 << 20));
    assert_eq!(t.hold, Duration::from_secs(1));
    assert_eq!(c.alerts.window.0, Duration::from_secs(6));
    let e = err(&format!(
        "{GOOD}\n[alerts]\nread_to_ack_p99 = \"5s\"\np999 = \"9s\"\n"
    ));
    assert!(e.msg.contains("unknown field `p999`"), "{e}");
    assert_eq!(e.line, Some(14), "{e}");
    let e = err(&format!("{GOOD}\n[alerts]\nbacklog_bytes = \"lots\"\n"));
    assert!(e.msg.contains("8MiB") && e.msg.contains("lots"), "{e}");
    assert_eq!(e.line, Some(13), "{e}");
    let e = err(&format!("{GOOD}\n[alerts]\nwindow = \"100ms\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("alerts.window"));
    assert_eq!(e.line, Some(13), "{e}");
    let e = err(&format!("{GOOD}\n[alerts]\noldest_unacked = \"0s\"\n"));
    assert_eq!(key_of(&e).as_deref(), Some("alerts.oldest_unacked"));
}

/// A config text over 256 KiB is refused before the parser sees it (it would build a
/// document many times its size: 131 MB for 1 MB of dotted keys), with its size.
#[test]
fn a_config_over_the_size_limit_is_refused_before_it_is_parsed() {
    let keys: String = (0..30_000).map(|i| format!("k{i}.x = 1\n")).collect();
    assert!(keys.len() > 256 << 10);
    let e = err(&format!("{GOOD}\n{keys}"));
    assert!(e.msg.contains("over the limit of 256 KiB"), "{e}");
    assert_eq!((e.line, e.key), (None, None));
    // Under the limit, the same kind of text gets the parser's own error.
    let e = err(&format!("{GOOD}\nk0.x = 1\n"));
    assert!(!e.msg.contains("over the limit"), "{e}");
}

/// Every value is read where it stands in the text: an error names its key, down to the
/// element of an array, and the line of the value, inside `[sink]` as well.
#[test]
fn a_bad_value_is_named_by_its_key_and_its_own_line() {
    let cases = [
        (
            mqtt("url = \"mqtt://x\"\nfailover = [\n  \"mqtt://y\",\n  \"tcp://z\",\n]"),
            "sink.failover[1]",
            13,
            "expected mqtt://host:port",
        ),
        (
            mqtt("url = \"mqtt://x\"\nwindow = -1"),
            "sink.window",
            11,
            "-1 is out of range: 0 to 4294967295",
        ),
        (
            format!("{GOOD}\n[batch]\nmax_lines = 5000000000\n"),
            "batch.max_lines",
            13,
            "out of range",
        ),
        (
            mqtt("url = 1883"),
            "sink.url",
            10,
            "invalid type: an integer, expected a string",
        ),
        (
            GOOD.replace("type = \"file\"\n", ""),
            "sink.type",
            8,
            "missing field `type`",
        ),
        (
            mqtt("url = \"mqtt://x\"\n[sink.tls]\ninsecure = \"yes\""),
            "sink.tls.insecure",
            12,
            "invalid type: a string, expected a boolean",
        ),
        (
            GOOD.replace("[[input]]", "[input]"),
            "input",
            4,
            "invalid type: a table, expected an array of tables",
        ),
        (
            GOOD.replace("paths = [\"/var/log/app/*.log\"]", "paths = [\"/a\", 7]"),
            "input[0].paths[1]",
            6,
            "invalid type: an integer, expected a string",
        ),
        (
            format!("{GOOD}\n[fleet]\nserver = \"http://cs\"\ntags = {{ site = 7 }}\n"),
            "fleet.tags.site",
            14,
            "expected a string",
        ),
        (
            format!("{GOOD}\n[metrics]\nlisten = \"localhost\"\n"),
            "metrics.listen",
            13,
            "like 127.0.0.1:9464",
        ),
        (
            GOOD.replace("type = \"file\"", "type = \"file\"\nmode = 1"),
            "sink.mode",
            10,
            "unknown field `mode`, expected one of `type`, `path`, `fsync`",
        ),
    ];
    for (text, key, line, what) in cases {
        let e = err(&text);
        assert_eq!(
            (key_of(&e).as_deref(), e.line),
            (Some(key), Some(line)),
            "{text}\n{e}"
        );
        assert!(e.msg.contains(what), "{e}");
    }
}

/// A fleet pipeline's name is the config's: a `name` key in its detail is refused; its
/// tables may also be written inline.
#[test]
fn a_pipeline_detail_has_no_name_of_its_own_and_may_write_its_tables_inline() {
    let e = parse_pipeline("p", "name = \"q\"\npaths = [\"/a\"]\n").unwrap_err();
    assert_eq!(
        (e.line, key_of(&e).as_deref()),
        (Some(1), Some("name")),
        "{e}"
    );
    assert!(e.msg.contains("unknown field `name`"), "{e}");
    match parse_pipeline("p", "paths = [\"/a\"]\nbatch = { max_lines = 7 }\n").unwrap() {
        FleetPipeline::Own { input, batch, .. } => {
            assert_eq!((input.name.as_str(), batch.unwrap().max_lines), ("p", 7));
        }
        other => panic!("{other:?}"),
    }
}

/// Each key set to a value of its own, none a default: each lands in its own field (the
/// reader takes keys by name, and a slip would put one key's value in another's field).
#[test]
fn every_key_is_read_into_its_own_field() {
    let s = |n| Secs(Duration::from_secs(n));
    let text = r#"
instance_id = "gw-9"
data_dir = "/d"
log_level = "debug"
stats_interval = 11
poll_interval = "12ms"
shutdown_timeout = 13

[[input]]
name = "a"
paths = ["/a/*.log"]
exclude = ["*.gz"]
start_at = "head"
max_line_bytes = 1001
partial_flush = 14
rotate_wait = 15

[batch]
max_lines = 16
max_bytes = 20000
linger = 17
compression = "none"

[spool]
max_bytes = 200000
segment_bytes = 30000
on_full = "drop_oldest"
fsync = false

[sink]
type = "mqtt"
url = "mqtt://b:1"
failover = ["mqtt://c:2"]
failback_after = 18
topic = "t/{instance}"
state_topic = "st/{instance}"
client_id = "cid"
username = "mu"
password = "mp"
keep_alive = 19
window = 20
max_packet_bytes = 40000
timeout = 21

[sink.tls]
ca_file = "/ca"
client_cert = "/cc"
client_key = "/ck"
insecure = true

[fleet]
server = "mqtt://f:3"
topic_prefix = "fp"
client_id = "fid"
username = "fu"
password = "fpw"
heartbeat_interval = 22
timeout = 23
agent_type = "at"
tags = { k = "v" }
token = "ft"
max_message_bytes = 24
rebirth_min_interval = 25
spool_high_bytes = 26

[fleet.tls]
ca_file = "/fca"

[metrics]
listen = "127.0.0.1:9"
stale_after = 27

[alerts]
read_to_ack_p99 = 28
backlog_bytes = 29
oldest_unacked = 30
free_disk = 31
hold = 32
window = 33
samples_per_sec = 34
"#;
    let c = Config::parse(text).unwrap();
    assert_eq!(c.instance_id.as_deref(), Some("gw-9"));
    assert_eq!(c.data_dir, PathBuf::from("/d"));
    assert_eq!(c.log_level, LogLevel(log::LevelFilter::Debug));
    assert_eq!(
        (c.stats_interval, c.poll_interval, c.shutdown_timeout),
        (s(11), Secs(Duration::from_millis(12)), s(13))
    );
    assert_eq!(
        c.inputs,
        [Input {
            name: "a".into(),
            paths: vec!["/a/*.log".into()],
            exclude: vec!["*.gz".into()],
            start_at: StartAt::Head,
            max_line_bytes: Size(1001),
            partial_flush: s(14),
            rotate_wait: s(15),
        }]
    );
    assert_eq!(
        c.batch,
        Batch {
            max_lines: 16,
            max_bytes: Size(20000),
            linger: s(17),
            compression: crate::frame::Codec::None,
        }
    );
    assert_eq!(
        c.spool,
        Spool {
            max_bytes: Size(200000),
            segment_bytes: Size(30000),
            on_full: OnFull::DropOldest,
            fsync: false,
        }
    );
    let Sink::Mqtt(m) = &c.sink else { panic!() };
    assert_eq!(
        (
            m.url.to_string(),
            m.failover[0].to_string(),
            m.failback_after
        ),
        ("mqtt://b:1".into(), "mqtt://c:2".into(), s(18))
    );
    assert_eq!(
        (m.topic.as_str(), m.state_topic.as_str()),
        ("t/{instance}", "st/{instance}")
    );
    assert_eq!(
        (
            m.client_id.as_deref(),
            m.username.as_deref(),
            m.password.as_ref().map(|p| p.expose())
        ),
        (Some("cid"), Some("mu"), Some("mp"))
    );
    assert_eq!(
        (m.keep_alive, m.window, m.max_packet_bytes, m.timeout),
        (s(19), 20, Size(40000), s(21))
    );
    assert_eq!(
        m.tls,
        Tls {
            ca_file: Some("/ca".into()),
            client_cert: Some("/cc".into()),
            client_key: Some("/ck".into()),
            insecure: true,
        }
    );
    // Filled from [fleet] when the config is read.
    assert_eq!(m.rebirth, ("fp".to_string(), Duration::from_secs(25)));
    let f = c.fleet.as_ref().unwrap();
    assert_eq!(
        (f.server.to_string(), f.topic_prefix.as_str()),
        ("mqtt://f:3".into(), "fp")
    );
    assert_eq!(
        (
            f.client_id.as_deref(),
            f.username.as_deref(),
            f.password.as_ref().map(|p| p.expose())
        ),
        (Some("fid"), Some("fu"), Some("fpw"))
    );
    assert_eq!(
        (f.heartbeat_interval, f.timeout, f.agent_type.as_str()),
        (s(22), s(23), "at")
    );
    assert_eq!(f.tags.get("k").map(String::as_str), Some("v"));
    assert_eq!(f.token.as_ref().map(|t| t.expose()), Some("ft"));
    assert_eq!(f.tls.ca_file, Some("/fca".into()));
    assert_eq!(
        (
            f.max_message_bytes,
            f.rebirth_min_interval,
            f.spool_high_bytes
        ),
        (Size(24), s(25), Some(Size(26)))
    );
    let mm = c.metrics.as_ref().unwrap();
    assert_eq!(
        (mm.listen.to_string(), mm.stale_after),
        ("127.0.0.1:9".into(), s(27))
    );
    assert_eq!(
        c.alerts,
        Alerts {
            read_to_ack_p99: Some(s(28)),
            backlog_bytes: Some(Size(29)),
            oldest_unacked: Some(s(30)),
            free_disk: Some(Size(31)),
            hold: s(32),
            window: s(33),
            samples_per_sec: 34,
        }
    );
    // The HTTP sink's own keys.
    let http = text.split("[sink]").next().unwrap().to_string()
        + "[sink]\ntype = \"http\"\nurl = \"http://h:1/x\"\nfailover = [\"http://g:2/y\"]\n\
           failback_after = 40\ntoken = \"ht\"\ntimeout = 41\n[sink.tls]\ninsecure = true\n";
    let c = Config::parse(&http).unwrap();
    let Sink::Http(h) = &c.sink else { panic!() };
    assert_eq!(
        (
            h.url.as_str(),
            h.failover[0].as_str(),
            h.failback_after,
            h.timeout
        ),
        ("http://h:1/x", "http://g:2/y", s(40), s(41))
    );
    assert_eq!(h.token.as_ref().map(|t| t.expose()), Some("ht"));
    assert!(h.tls.insecure);
    let c = Config::parse(&http.replace("token = \"ht\"", "username = \"hu\"\npassword = \"hp\""))
        .unwrap();
    let Sink::Http(h) = &c.sink else { panic!() };
    assert_eq!(
        (
            h.username.as_deref(),
            h.password.as_ref().map(|p| p.expose())
        ),
        (Some("hu"), Some("hp"))
    );
    // A file sink's.
    let c = Config::parse(&GOOD.replace("path = \"/tmp/out.tbf\"", "path = \"/o\"\nfsync = false"))
        .unwrap();
    assert_eq!(
        c.sink,
        Sink::File {
            path: "/o".into(),
            fsync: false
        }
    );
}

/// Numbers as TOML has them (signed 64-bit: `-0` is 0, 2^63 is none), and sizes and durations
/// bounded where the agent's arithmetic is safe (1 PiB, a year): larger ones are refused by
/// key and line, not taken to overflow a deadline or a sum later (they panicked the agent, and
/// a fleet could send them).
#[test]
fn numbers_are_toml_integers_and_sizes_and_durations_are_bounded() {
    let c = Config::parse(&mqtt("url = \"mqtt://x\"\nkeep_alive = -0\nwindow = 0x10")).unwrap();
    let Sink::Mqtt(m) = &c.sink else { panic!() };
    assert_eq!((m.keep_alive.0, m.window), (Duration::ZERO, 16));
    for (extra, key, what) in [
        (
            "window = 9223372036854775808",
            "sink.window",
            "out of range",
        ),
        (
            "window = 18446744073709551615",
            "sink.window",
            "out of range",
        ),
        (
            "failback_after = 9223372036854775807",
            "sink.failback_after",
            "out of range: 0 to 31622400",
        ),
        (
            "timeout = \"9000h\"",
            "sink.timeout",
            "\"9000h\" is over a year (8784h)",
        ),
        (
            "max_packet_bytes = \"2000000GiB\"",
            "sink.max_packet_bytes",
            "is over 1PiB",
        ),
        (
            "max_packet_bytes = 18446744073709551104",
            "sink.max_packet_bytes",
            "out of range",
        ),
    ] {
        let e = err(&mqtt(&format!("url = \"mqtt://x\"\n{extra}")));
        assert_eq!(
            (key_of(&e).as_deref(), e.line),
            (Some(key), Some(11)),
            "{e}"
        );
        assert!(e.msg.contains(what), "{e}");
    }
    let e = err(&GOOD.replace(
        "name = \"app\"",
        "name = \"app\"\nmax_line_bytes = \"16383PiB\"",
    ));
    assert_eq!(
        key_of(&e).as_deref(),
        Some("input[0].max_line_bytes"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}\n[spool]\nsegment_bytes = 9223372036854775807\n"
    ));
    assert_eq!(key_of(&e).as_deref(), Some("spool.segment_bytes"), "{e}");
}

/// A check across keys (validation, after reading) names the value's own line however the
/// value is written: an inline table, a dotted or quoted key, after a multi-line string
/// that looks like a key; and an entry of a list by its index.
#[test]
fn a_check_across_keys_names_the_line_of_the_value_however_it_is_written() {
    let head = &GOOD[..GOOD.find("[sink]").unwrap()];
    let input = "[[input]]\nname = \"app\"\npaths = [\"/a\"]\n";
    for (text, line) in [
        (
            format!("data_dir = \"/d\"\nsink = {{ type = \"mqtt\", url = \"mqtt://h\", window = 0 }}\n{input}"),
            2,
        ),
        (
            format!("data_dir = \"/d\"\nsink.type = \"mqtt\"\nsink.url = \"mqtt://h\"\nsink.window = 0\n{input}"),
            4,
        ),
        (
            format!("{head}[\"sink\"]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\n\"window\" = 0\n"),
            11,
        ),
        (
            format!("{head}[sink]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\ntopic = \"\"\"\nwindow = 5\n\"\"\"\nwindow = 0\n"),
            14,
        ),
    ] {
        let e = err(&text);
        assert_eq!(
            (key_of(&e).as_deref(), e.line),
            (Some("sink.window"), Some(line)),
            "{text}: {e}"
        );
    }
    let e = err(&GOOD.replace(
        "paths = [\"/var/log/app/*.log\"]",
        "paths = [\n  \"/x\",\n  \"\",\n]",
    ));
    assert_eq!(
        (key_of(&e).as_deref(), e.line, e.msg.as_str()),
        (Some("input[0].paths[1]"), Some(8), "empty pattern"),
        "{e}"
    );
}

/// An error is one line and quotes at most 64 characters of anything, whatever the keys
/// and values: a quoted key with control characters is shown escaped; a long codec or tag
/// name is cut with its length; a malformed URL with an `@` is not shown at all (it may
/// carry a password that the credentials check could not see).
#[test]
fn an_error_is_one_line_whatever_the_keys_and_values_hold() {
    let e = err(&format!("\"a\\nb\\u001b[31m\" = 1\n{GOOD}"));
    let shown = e.to_string();
    assert!(!shown.contains(['\n', '\u{1b}']), "{shown:?}");
    assert_eq!(
        key_of(&e).as_deref(),
        Some("\"a\\nb\\u{1b}[31m\""),
        "{shown}"
    );
    let big = "k".repeat(5000);
    let e = err(&format!("{GOOD}\n[batch]\ncompression = \"{big}\"\n"));
    assert!(e.to_string().contains("… (5000 bytes)"), "{e}");
    let e = err(&mqtt(&format!(
        "url = \"mqtt://x\"\ntopic = \"{{{big}}}/{{instance}}\""
    )));
    assert!(e.to_string().contains("…} (5000 bytes)"), "{e}");
    assert!(e.to_string().len() < 300, "{e}");
    let e = err(&GOOD.replace(
        "type = \"file\"\npath = \"/tmp/out.tbf\"",
        "type = \"http\"\nurl = \"http:/u:SECRETVAL@h/\"",
    ));
    assert_eq!(key_of(&e).as_deref(), Some("sink.url"));
    assert!(!e.to_string().contains("SECRETVAL"), "{e}");
    let e = err(&format!("log_level = \"loud\"\n{GOOD}"));
    assert!(e.msg.contains("off, error"), "{e}");
}

/// A password in a malformed URL is never shown, and a URL whose host part holds one (ended
/// early by `#`, `?` or `/`, as RFC 3986 reads it) is refused, not taken and then logged at
/// every retry.
#[test]
fn a_password_in_a_malformed_url_is_never_shown_nor_taken() {
    let http = |url: &str| {
        GOOD.replace(
            "type = \"file\"\npath = \"/tmp/out.tbf\"",
            &format!("type = \"http\"\nurl = \"{url}\""),
        )
    };
    for (text, secret) in [
        (http("http://user:Zq/ss@127.0.0.1:9/x"), "Zq"),
        (http("http://user:hunter2?@127.0.0.1:9/x"), "hunter2"),
        (http("http://user:hunter2#@127.0.0.1:9/x"), "hunter2"),
        (mqtt("url = \"mqtt://user:s3cr?et@127.0.0.1\""), "s3cr"),
        (
            format!("{GOOD}\n[fleet]\nserver = \"http://user:hunter2#@127.0.0.1:9/cs\"\n"),
            "hunter2",
        ),
    ] {
        let e = err(&text).to_string();
        assert!(!e.contains(secret), "{e}");
    }
    // A password whose first part is digits reads as a port: refused too, unshown.
    for (url, secret) in [
        ("http://admin:2024#Secret@h/x", "Secret"),
        ("http://u:1234/Secret@h", "Secret"),
        ("http://u:1234?Secret@h", "Secret"),
    ] {
        let e = err(&http(url)).to_string();
        assert!(e.contains("credentials") && !e.contains(secret), "{e}");
    }
    // The client sends no fragment.
    assert!(err(&http("http://h:8080/x#frag")).msg.contains("fragment"));
    // An '@' in a path or a query is not a credential.
    assert!(Config::parse(&http("http://h/a@b?c=@")).is_ok());
}

/// A syntax error inside a multi-line string names no key from the string's text (it may be
/// a token written over lines); an enum value or a file name with line breaks is shown
/// escaped; a long integer literal is cut; a tag value is named by its own key and line.
#[test]
fn errors_quote_no_secret_and_no_line_break_whatever_the_text() {
    let e = err(&GOOD.replace(
        "type = \"file\"\npath = \"/tmp/out.tbf\"",
        "type = \"http\"\nurl = \"http://h/x\"\ntoken = \"\"\"\nc2VjcmV0LXRva2VuLTQy==\\q\n\"\"\"",
    ))
    .to_string();
    assert!(!e.contains("c2VjcmV0"), "{e}");
    for text in [
        format!("{GOOD}\n[batch]\ncompression = \"lz5\\nFAKE: line two\"\n"),
        GOOD.replace("type = \"file\"", "type = \"fi\\rle\\nX\""),
        format!("{GOOD}\n[spool]\non_full = \"\\u001b[2Jblock\\nY\"\n"),
    ] {
        let e = err(&text).to_string();
        assert!(!e.contains(['\n', '\r', '\u{1b}']), "{e:?}");
    }
    let e = err(&format!(
        "shutdown_timeout = 0b{}{}\n{GOOD}",
        "0".repeat(900),
        "1".repeat(70)
    ))
    .to_string();
    assert!(e.len() < 200, "{e}");
    let e = err(&format!(
        "{GOOD}\n[fleet]\nserver = \"mqtt://127.0.0.1:9\"\n[fleet.tags]\nok = \"x\"\nbad = \"a/b\"\n"
    ));
    assert_eq!(
        (key_of(&e).as_deref(), e.line),
        (Some("fleet.tags.bad"), Some(16)),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[batch]\nlinger = \"31622400001ms\"\n"));
    assert!(e.msg.contains("over a year"), "{e}");
    for ka in ["65536", "\"1500ms\"", "\"500ms\""] {
        let e = err(&mqtt(&format!("url = \"mqtt://x\"\nkeep_alive = {ka}")));
        assert_eq!(key_of(&e).as_deref(), Some("sink.keep_alive"), "{e}");
    }
    // A syntax error names no key: a guess from the raw lines took a token's line for one
    // (a `"""` in a comment threw the count of multi-line strings off).
    let e = err(&GOOD.replace(
        "type = \"file\"\npath = \"/tmp/out.tbf\"",
        "type = \"http\"\n# long values may use \"\"\" quotes\nurl = \"http://h/x\"\n\
         token = \"\"\"\nc2VjcmV0LXRva2Vu=AB\\qCD\n\"\"\"",
    ));
    assert_eq!((e.key.clone(), e.line), (None, Some(13)), "{e}");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    // Bidi overrides and line separators are escaped like control characters.
    let e = err(&format!(
        "{GOOD}\n[fleet]\nserver = \"mqtt://127.0.0.1:9\"\ntags = {{ \"a\\u202Eb\\u2028\" = \"x/y\" }}\n"
    ))
    .to_string();
    assert!(!e.contains(['\u{202e}', '\u{2028}']), "{e:?}");
}
