//! The JSON report matches the committed schema `docs/report.schema.json`, for open and closed
//! runs, with and without errors and a time series; and the schema is strict enough to reject
//! a broken document (so this test can fail).

use generator::export::{Abort, Cpu, Mode, Report, RunInfo, Threshold, UsersInfo};
use generator::measure::{ErrorKind, Recorder, Snapshot};
use serde_json::Value;

const MS: u64 = 1_000_000;

fn schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/report.schema.json");
    let text = std::fs::read_to_string(path).expect("docs/report.schema.json is readable");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

fn assert_valid(doc: &Value) {
    let v = schema();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}\n{doc:#}");
}

fn info(mode: Mode) -> RunInfo {
    RunInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        target: "http://127.0.0.1:8080/metrics".into(),
        method: "POST".into(),
        mode,
        duration_s: 3.0,
        warmup_s: 0.5,
        threads: 2,
        connections: 16,
        users: None,
        driver: "io_uring".into(),
        started_at_unix_ms: 1_764_000_000_000,
    }
}

/// One interval: `n` responses spread from 1 ms to ~n ms, with some schedule lag and connects.
fn interval(start_ns: u64, n: u64, errors: bool) -> Snapshot {
    let mut r = Recorder::new();
    r.record_connect(150_000);
    for i in 0..n {
        let intended = start_ns + i * 1_000;
        let sent = intended + 20_000 + i * 10;
        r.record_sent(180);
        r.record_response(
            intended,
            sent,
            sent + MS / 2,
            sent + MS * (1 + i % 50),
            200,
            350,
        );
    }
    if errors {
        r.record_response(
            start_ns,
            start_ns,
            start_ns + MS,
            start_ns + 2 * MS,
            503,
            90,
        );
        r.record_error(ErrorKind::Timeout);
        r.record_error(ErrorKind::Connect);
        r.record_dropped();
    }
    r.take_snapshot()
        .with_interval(start_ns, start_ns + 1_000 * MS)
}

fn series(errors: bool) -> (Snapshot, Vec<Snapshot>) {
    let base = 10_000 * MS;
    let parts: Vec<Snapshot> = (0..3)
        .map(|i| interval(base + i * 1_000 * MS, 200 + i * 10, errors))
        .collect();
    (Snapshot::merged(&parts), parts)
}

#[test]
fn open_run_without_errors_or_series() {
    let (totals, _) = series(false);
    let r = Report::new(
        info(Mode::Open { rate: 210.0 }),
        &totals,
        &[],
        3.0,
        Cpu {
            user_s: 0.2,
            system_s: 0.1,
        },
    );
    let doc = r.to_json();
    assert_valid(&doc);
    assert_eq!(doc["run"]["mode"], "open");
    assert_eq!(doc["series"], serde_json::json!([]));
    assert_eq!(doc["exit_code"], 0);
}

#[test]
fn open_run_with_errors_series_and_warning() {
    let (totals, parts) = series(true);
    // Lots of CPU: the generator-bound reasons array must validate too.
    let r = Report::new(
        info(Mode::Open { rate: 1_000.0 }),
        &totals,
        &parts,
        3.0,
        Cpu {
            user_s: 5.0,
            system_s: 1.0,
        },
    );
    assert!(r.generator_bound());
    let doc = r.to_json();
    assert_valid(&doc);
    assert_eq!(doc["series"].as_array().unwrap().len(), 3);
    assert_eq!(doc["series"][1]["t_s"], 1.0);
    assert_eq!(doc["errors"]["timeout"], 3);
    assert_eq!(doc["generator_bound"], true);
}

#[test]
fn closed_run_with_and_without_errors() {
    for errors in [false, true] {
        let (totals, parts) = series(errors);
        let r = Report::new(
            info(Mode::Closed { connections: 16 }),
            &totals,
            &parts,
            3.0,
            Cpu::default(),
        );
        let doc = r.to_json();
        assert_valid(&doc);
        assert!(doc["run"]["target_rate"].is_null());
    }
}

#[test]
fn failed_run_with_nothing_measured() {
    let mut r = Recorder::new();
    r.record_error(ErrorKind::Connect);
    let totals = r.take_snapshot();
    let rep = Report::new(
        info(Mode::Open { rate: 100.0 }),
        &totals,
        &[Snapshot::empty()],
        3.0,
        Cpu::default(),
    );
    assert_eq!(rep.exit_code(), 1);
    let doc = rep.to_json();
    assert_valid(&doc);
    assert!(doc["latency"]["response_time"]["p99_us"].is_null());
    assert!(doc["series"][0]["p99_us"].is_null());
    // An entirely empty run (zero-length window) is still a valid document.
    assert_valid(
        &Report::new(
            info(Mode::Closed { connections: 1 }),
            &Snapshot::empty(),
            &[],
            0.0,
            Cpu::default(),
        )
        .to_json(),
    );
}

#[test]
fn broken_documents_are_rejected() {
    let (totals, parts) = series(true);
    let good = Report::new(
        info(Mode::Open { rate: 100.0 }),
        &totals,
        &parts,
        3.0,
        Cpu::default(),
    )
    .to_json();
    let v = schema();
    assert!(v.is_valid(&good));

    let mut missing = good.clone();
    missing["latency"]["response_time"]
        .as_object_mut()
        .unwrap()
        .remove("p99_us");
    assert!(
        !v.is_valid(&missing),
        "a missing percentile must be rejected"
    );

    let mut missing_top = good.clone();
    missing_top
        .as_object_mut()
        .unwrap()
        .remove("schema_version");
    assert!(
        !v.is_valid(&missing_top),
        "a missing schema_version must be rejected"
    );

    let mut extra = good.clone();
    extra["counts"]["surprise"] = 1.into();
    assert!(!v.is_valid(&extra), "unknown fields must be rejected");

    let mut wrong_type = good.clone();
    wrong_type["counts"]["responses"] = "many".into();
    assert!(!v.is_valid(&wrong_type), "a string count must be rejected");

    let mut closed_with_rate = good.clone();
    closed_with_rate["run"]["mode"] = "closed".into();
    assert!(
        !v.is_valid(&closed_with_rate),
        "a closed run has no target rate"
    );

    let mut zero_count_with_values = good.clone();
    zero_count_with_values["latency"]["response_time"]["count"] = 0.into();
    assert!(
        !v.is_valid(&zero_count_with_values),
        "an empty histogram has null figures"
    );

    let mut bound_without_reason = good;
    bound_without_reason["generator_bound"] = true.into();
    bound_without_reason["generator_bound_reasons"] = serde_json::json!([]);
    assert!(
        !v.is_valid(&bound_without_reason),
        "a bound run must say why"
    );
}

/// The `kernel` object (eBPF probes) validates measured, unavailable and off, and the schema
/// rejects a measured report without its figures or an unavailable one without a reason.
#[test]
fn kernel_probe_figures() {
    use generator::measure::Hist;
    use generator::probes::{KernelFigures, KernelStatus};
    let (totals, parts) = series(false);
    let report = |k: KernelStatus| {
        Report::new(
            info(Mode::Open { rate: 210.0 }),
            &totals,
            &parts,
            3.0,
            Cpu::default(),
        )
        .with_kernel(k)
        .to_json()
    };
    let mut latency = Hist::new();
    latency.record_us_n(900, 600);
    let measured = report(KernelStatus::Measured(Box::new(KernelFigures {
        attach: "tracepoint",
        latency,
        connect: Hist::new(),
        srtt: Hist::new(),
        retransmits: 0,
        sockets: 16,
    })));
    assert_valid(&measured);
    assert_eq!(measured["kernel"]["connect_time"]["count"], 0);
    assert_valid(&report(KernelStatus::Unavailable("no BTF".into())));
    assert_valid(&report(KernelStatus::Off));

    let v = schema();
    let mut no_figures = measured.clone();
    no_figures["kernel"]["latency"] = Value::Null;
    assert!(!v.is_valid(&no_figures), "measured needs its latency");
    let mut no_reason = report(KernelStatus::Unavailable("x".into()));
    no_reason["kernel"]["reason"] = Value::Null;
    assert!(!v.is_valid(&no_reason), "unavailable says why");
    let mut figures_when_off = report(KernelStatus::Off);
    figures_when_off["kernel"]["retransmits"] = 1.into();
    assert!(!v.is_valid(&figures_when_off), "off has no figures");
}

/// The users model's run info, an abort by --abort-on-fail and the per-name current RPS
/// validate; a users block with 0 users or an abort without its threshold does not.
#[test]
fn users_run_aborted_with_current_rps() {
    let (totals, parts) = series(true);
    let mut run = info(Mode::Closed { connections: 16 });
    run.users = Some(UsersInfo {
        users: 16,
        spawn_rate: Some(4.0),
        think_min_s: 0.5,
        think_max_s: 1.5,
    });
    let r = Report::new(run, &totals, &parts, 3.0, Cpu::default())
        .with_endpoint_names(vec!["/metrics".into()])
        .with_thresholds(vec![Threshold::parse("errors<0.1%").unwrap()])
        .with_abort(Some(Abort {
            threshold: "errors<0.1%".into(),
            at_s: 2.0,
        }))
        .with_current_rps(Some(vec![12.5, 13.0]));
    let mut doc = r.to_json();
    assert_valid(&doc);
    assert_eq!(doc["run"]["users"]["spawn_rate"], 4.0);
    assert_eq!(doc["aborted"]["threshold"], "errors<0.1%");
    assert_eq!(doc["exit_code"], 3);
    let rows = doc["endpoints"].as_array().unwrap();
    assert_eq!(rows.last().unwrap()["current_rps"], 13.0);
    doc["run"]["users"]["users"] = 0.into();
    assert!(schema().iter_errors(&doc).next().is_some(), "0 users");
    doc["run"]["users"]["users"] = 16.into();
    doc["aborted"] = serde_json::json!({ "at_s": 2.0 });
    assert!(
        schema().iter_errors(&doc).next().is_some(),
        "abort without threshold"
    );
}
