// Renders the gen report embedded in this page (the #gen-data JSON) and draws its charts as
// SVG. Hand-written and dependency-free so the file works offline; docs/html-report.md.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c", "#e8590c", "#0b7285"];
  const data = JSON.parse(document.getElementById("gen-data").textContent);
  const page = document.getElementById("page");

  // ---- formatting -------------------------------------------------------------------
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const fixed = (v, d) => Number(v.toFixed(d)).toLocaleString("en-US", { maximumFractionDigits: d });
  function fmtUs(us) {
    if (!isNum(us)) return "-";
    if (us < 1000) return fixed(us, us < 10 ? 2 : us < 100 ? 1 : 0) + "µs";
    if (us < 1e6) return fixed(us / 1000, 2) + "ms";
    return fixed(us / 1e6, 2) + "s";
  }
  const fmtNum = (v, d = 0) => (isNum(v) ? fixed(v, d) : "-");
  const fmtRate = (v) => (isNum(v) ? fixed(v, v >= 1000 ? 0 : 2) : "-");
  const fmtPct = (f, d = 2) => (isNum(f) ? fixed(f * 100, d) + "%" : "-");
  function fmtBytes(b) {
    if (!isNum(b)) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return fixed(b, i ? 2 : 0) + units[i];
  }
  const fmtSecs = (s) => (isNum(s) ? fixed(s, 2) + "s" : "-");

  // ---- DOM helpers ------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const kid of kids.flat()) {
      if (kid !== undefined && kid !== null) e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const section = (title, ...kids) => el("section", {}, el("h2", {}, title), ...kids);
  function table(id, head, rows) {
    return el("div", { class: "scroll" }, el("table", { id },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) =>
        c instanceof Node ? c : el("td", {}, c)))))));
  }
  const verdictCell = (pass, text) => el("td", { class: pass ? "pass" : "fail" }, text);
  const card = (k, v, s) => el("div", { class: "card" }, el("div", { class: "k" }, k),
    el("div", { class: "v" }, v), s ? el("div", { class: "s" }, s) : null);
  const badge = (text, cls) => el("span", { class: "badge " + (cls || "") }, text);

  // ---- charts -----------------------------------------------------------------------
  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  // A linear (from 0 unless told otherwise) or log10 scale over the values, with ticks.
  function scale(values, opts) {
    const log = !!opts.log;
    const vs = values.filter((v) => isNum(v) && (!log || v > 0));
    if (opts.min !== undefined) vs.push(opts.min);
    if (opts.max !== undefined) vs.push(opts.max);
    // reduce, not Math.min(...vs): a day-long series is more arguments than a call takes.
    let lo = vs.length ? vs.reduce((a, b) => Math.min(a, b)) : 0;
    let hi = vs.length ? vs.reduce((a, b) => Math.max(a, b)) : 1;
    if (log) {
      if (!vs.length) { lo = 1; hi = 10; }
      lo = Math.pow(10, Math.floor(Math.log10(lo)));
      hi = Math.pow(10, Math.ceil(Math.log10(hi)));
      if (hi <= lo) hi = lo * 10;
      const ticks = [];
      for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
      const [a, b] = [Math.log10(lo), Math.log10(hi)];
      return { ticks, f: (v) => (Math.log10(Math.max(v, lo)) - a) / (b - a) };
    }
    if (!opts.fit) lo = Math.min(lo, 0);
    if (hi <= lo) hi = lo + 1;
    const step = niceStep((hi - lo) / 5);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let t = lo; t <= hi + step / 2; t += step) ticks.push(t);
    return { ticks, f: (v) => (v - lo) / (hi - lo) };
  }

  // opts: {id, title, series: [{name, pts: [[x, y|null]], dash, axis: "y2", dots, dotColor}],
  //        x: {label, fmt, ticks?: [[x, label]], fit}, y: {label, fmt, log}, y2: {label, fmt},
  //        marks: [{x, label, color}]}
  function lineChart(opts) {
    const W = 640, H = 280, L = 66, R = opts.y2 ? 62 : 18, T = 14, B = 42;
    const pw = W - L - R, ph = H - T - B;
    const series = opts.series.filter((s) => s.pts.some((p) => isNum(p[1])));
    const all = (axis) => series.filter((s) => (s.axis === "y2") === (axis === "y2"))
      .flatMap((s) => s.pts.map((p) => p[1]));
    const xs = series.flatMap((s) => s.pts.map((p) => p[0]))
      .concat((opts.marks || []).map((m) => m.x));
    const sx = opts.x.ticks
      ? scale(xs.concat(opts.x.ticks.map((t) => t[0])), { fit: true })
      : scale(xs, { fit: opts.x.fit });
    const sy = scale(all("y"), { log: opts.y.log });
    const sy2 = opts.y2 ? scale(all("y2"), {}) : null;
    const X = (x) => L + sx.f(x) * pw;
    const Y = (y, s) => T + ph - (s || sy).f(y) * ph;
    const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": opts.title });
    const xticks = opts.x.ticks || sx.ticks.map((t) => [t, opts.x.fmt(t)]);
    for (const [t, label] of xticks) {
      svg.append(svgEl("line", { class: "grid", x1: X(t), x2: X(t), y1: T, y2: T + ph }));
      svg.append(svgEl("text", { x: X(t), y: T + ph + 15, "text-anchor": "middle" }, label));
    }
    for (const t of sy.ticks) {
      svg.append(svgEl("line", { class: "grid", x1: L, x2: L + pw, y1: Y(t), y2: Y(t) }));
      svg.append(svgEl("text", { x: L - 6, y: Y(t) + 4, "text-anchor": "end" }, opts.y.fmt(t)));
    }
    if (sy2) {
      for (const t of sy2.ticks) {
        svg.append(svgEl("text", { x: L + pw + 6, y: Y(t, sy2) + 4 }, opts.y2.fmt(t)));
      }
    }
    svg.append(svgEl("path", { class: "axis", fill: "none",
      d: `M${L},${T}V${T + ph}H${L + pw}` + (sy2 ? `V${T}` : "") }));
    svg.append(svgEl("text", { x: L + pw / 2, y: H - 6, "text-anchor": "middle" }, opts.x.label));
    svg.append(svgEl("text", { x: 12, y: T + ph / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${T + ph / 2})` }, opts.y.label));
    if (sy2) {
      svg.append(svgEl("text", { x: W - 8, y: T + ph / 2, "text-anchor": "middle",
        transform: `rotate(90 ${W - 8} ${T + ph / 2})` }, opts.y2.label));
    }
    (opts.marks || []).forEach((m, i) => {
      if (!isNum(m.x)) return;
      svg.append(svgEl("line", { x1: X(m.x), x2: X(m.x), y1: T, y2: T + ph, stroke: m.color,
        "stroke-width": 1.5, "stroke-dasharray": "5 4", class: "mark" }));
      // Labels stacked, so two close marks stay readable.
      svg.append(svgEl("text", { x: X(m.x) + 4, y: T + 12 + 14 * i, style: `fill:${m.color}` },
        m.label));
    });
    const legend = el("div", { class: "note" });
    series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const yscale = s.axis === "y2" ? sy2 : sy;
      let d = "";
      let pen = false;
      for (const [x, y] of s.pts) {
        if (!isNum(y) || (opts.y.log && s.axis !== "y2" && y <= 0)) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${X(x).toFixed(1)},${Y(y, yscale).toFixed(1)}`;
        pen = true;
      }
      svg.append(svgEl("path", { class: "line", d, fill: "none", stroke: color,
        "stroke-width": 2, "stroke-dasharray": s.dash ? "6 4" : "none",
        "data-series": s.name }));
      if (s.dots) {
        for (const [x, y, tip, ok] of s.pts) {
          if (!isNum(y)) continue;
          const c = svgEl("circle", { cx: X(x), cy: Y(y, yscale), r: 4,
            fill: ok === undefined ? color : ok ? "#1a7f37" : "#c62828" });
          if (tip) c.append(svgEl("title", {}, tip));
          svg.append(c);
        }
      }
      legend.append(el("span", { style: `color:${color};margin-right:14px` },
        (s.dash ? "╌╌ " : "━━ ") + s.name));
    });
    if (!series.length) legend.append("no data in this run");
    return el("figure", { id: opts.id }, el("figcaption", {}, opts.title), svg, legend);
  }

  // ---- the run page -----------------------------------------------------------------
  const ERROR_KINDS = ["connect", "timeout", "reset", "closed", "parse", "status", "tls"];
  const QUANTS = [["p50_us", 0.5], ["p75_us", 0.75], ["p90_us", 0.9], ["p95_us", 0.95],
    ["p99_us", 0.99], ["p99_9_us", 0.999], ["p99_99_us", 0.9999], ["p99_999_us", 0.99999]];
  const qx = (q) => -Math.log10(1 - q);
  const Q_TICKS = [[0, "0%"], [qx(0.9), "90%"], [qx(0.99), "99%"], [qx(0.999), "99.9%"],
    [qx(0.9999), "99.99%"], [qx(0.99999), "99.999%"]];

  function exitBadge(code, bound, hasThresholds) {
    const out = [];
    if (code === 0) out.push(badge(hasThresholds ? "PASS: thresholds met" : "completed"));
    else if (code === 3) out.push(badge("FAIL: threshold failed (exit 3)", "bad"));
    else if (code === 1) out.push(badge("FAIL: no successful response (exit 1)", "bad"));
    else out.push(badge("exit " + code, "bad"));
    if (bound) out.push(" ", badge("generator-bound", "warn"));
    return out;
  }

  function summaryCards(r) {
    const tp = r.throughput || {}, c = r.counts || {}, e = r.errors || {}, lat = r.latency || {};
    const rt = lat.response_time || {};
    const target = tp.target_rate;
    const kinds = ERROR_KINDS.filter((k) => e[k] > 0).map((k) => `${k} ${fmtNum(e[k])}`);
    const attempted = (c.responses || 0) + (e.total || 0) - (e.status || 0);
    const st = r.status || {};
    const classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"].filter((k) => st[k] > 0)
      .map((k) => `${k} ${fmtNum(st[k])}`).join(" · ");
    return el("div", { class: "cards", id: "summary" },
      card("target rate", isNum(target) ? fmtRate(target) + " req/s" : "closed model",
        isNum(target) ? (r.run && r.run.mode) + " model" : fmtNum(r.run && r.run.connections) + " connections"),
      card("achieved rate", fmtRate(tp.achieved_rate) + " req/s",
        isNum(target) && target > 0 ? fmtPct(tp.achieved_rate / target, 1) + " of target" : null),
      card("responses", fmtNum(c.responses), fmtNum(c.successful) + " successful" +
        (classes ? " · " + classes : "")),
      card("errors", fmtNum(e.total), (kinds.join(", ") || "none") +
        (attempted > 0 ? ` · ${fmtPct((e.total || 0) / attempted)}` : "")),
      card("dropped", fmtNum(c.dropped), "no free connection, queue full"),
      card("response p50 / p99", `${fmtUs(rt.p50_us)} / ${fmtUs(rt.p99_us)}`,
        `p99.9 ${fmtUs(rt.p99_9_us)} · max ${fmtUs(rt.max_us)}`),
      card("measured", fmtSecs(r.run && r.run.measured_s),
        `warm-up ${fmtSecs(r.run && r.run.warmup_s)}`),
      card("exit code", String(r.exit_code), r.generator_bound ? "generator-bound" : null));
  }

  function endpointsTable(rows) {
    return table("endpoints", ["Name", "# reqs", "# fails", "median", "p95", "p99", "max",
      "average", "avg size", "req/s", "failures/s"], rows.map((x) => [
      x.name, fmtNum(x.requests),
      `${fmtNum(x.failures)} (${x.requests ? fmtPct(x.failures / x.requests) : "0%"})`,
      fmtUs(x.p50_us), fmtUs(x.p95_us), fmtUs(x.p99_us), fmtUs(x.max_us), fmtUs(x.mean_us),
      fmtBytes(x.avg_size_bytes), fmtRate(x.rps), fmtRate(x.failures_per_s)]));
  }

  function seriesCharts(r) {
    const pts = r.series || [];
    if (!pts.length) return el("p", { class: "note" }, "This run recorded no time series.");
    const t = (p) => p.t_s;
    const per = (n, p) => (p.duration_s > 0 ? n / p.duration_s : null);
    // Short runs get fractional ticks (0.2 s steps): keep a decimal for them.
    const x = { label: "seconds into the measured window", fmt: (v) => fixed(v, 1), fit: true };
    const target = r.throughput && r.throughput.target_rate;
    const rate = [{ name: "achieved req/s", pts: pts.map((p) => [t(p), p.rate]) }];
    if (isNum(target)) {
      rate.push({ name: "target req/s", dash: true, color: "#667085",
        pts: pts.map((p) => [t(p), target]) });
    }
    return el("div", { class: "charts" },
      lineChart({ id: "chart-rate", title: "Achieved rate vs target", series: rate, x,
        y: { label: "req/s", fmt: (v) => fixed(v, 0) } }),
      lineChart({ id: "chart-latency", title: "Response time per second", x,
        series: [
          { name: "p50", pts: pts.map((p) => [t(p), p.p50_us]) },
          { name: "p99", pts: pts.map((p) => [t(p), p.p99_us]) },
          { name: "max", dash: true, color: "#adb5bd", pts: pts.map((p) => [t(p), p.max_us]) }],
        y: { label: "response time", fmt: fmtUs } }),
      lineChart({ id: "chart-errors", title: "Errors and drops per second", x,
        series: [
          { name: "errors/s", color: "#c62828", pts: pts.map((p) => [t(p), per(p.errors, p)]) },
          { name: "dropped/s", color: "#9a6700", dash: true,
            pts: pts.map((p) => [t(p), per(p.dropped, p)]) }],
        y: { label: "per second", fmt: (v) => fixed(v, 1) } }));
  }

  // The latency rows present in the report: [label, summary].
  function latencyRows(r) {
    const lat = r.latency || {}, k = r.kernel || {};
    const rows = [["response time", lat.response_time], ["service time", lat.service_time],
      ["time to first byte", lat.time_to_first_byte], ["schedule lag", lat.schedule_lag],
      ["connect time", lat.connect_time], ["TLS handshake", lat.tls_handshake_time]];
    if (k.status === "measured") {
      rows.push(["kernel latency", k.latency], ["kernel connect", k.connect_time],
        ["srtt", k.srtt]);
    }
    return rows.filter(([, s]) => s && s.count > 0);
  }

  function spectrum(r) {
    const summaryPts = (s) => QUANTS.map(([key, q]) => [qx(q), s[key]]);
    const lat = r.latency || {};
    const spec = (r.response_time_spectrum || []).filter((l) => l.quantile < 1);
    const series = [];
    if (spec.length) {
      series.push({ name: "response time", pts: spec.map((l) => [qx(l.quantile), l.value_us]) });
    } else if (lat.response_time && lat.response_time.count) {
      series.push({ name: "response time", pts: summaryPts(lat.response_time) });
    }
    for (const [name, s] of [["service time", lat.service_time], ["schedule lag", lat.schedule_lag],
      ["kernel latency", r.kernel && r.kernel.status === "measured" ? r.kernel.latency : null]]) {
      if (s && s.count > 0) series.push({ name, pts: summaryPts(s) });
    }
    if (!series.length) return el("p", { class: "note" }, "No responses: no latency figures.");
    const rows = latencyRows(r).map(([name, s]) => [name, fmtNum(s.count), fmtUs(s.min_us),
      fmtUs(s.p50_us), fmtUs(s.p90_us), fmtUs(s.p99_us), fmtUs(s.p99_9_us), fmtUs(s.p99_99_us),
      fmtUs(s.max_us), fmtUs(s.mean_us), fmtUs(s.stdev_us)]);
    const ov = r.kernel && r.kernel.generator_overhead;
    if (ov) {
      rows.push(["gen overhead", "", "", fmtUs(ov.p50_us), fmtUs(ov.p90_us), fmtUs(ov.p99_us),
        fmtUs(ov.p99_9_us), fmtUs(ov.p99_99_us), "", fmtUs(ov.mean_us), ""]);
    }
    return [
      el("div", { class: "charts" }, lineChart({ id: "chart-spectrum",
        title: "Percentile spectrum", series,
        x: { label: "percentile (log scale of the tail)", ticks: Q_TICKS },
        y: { label: "latency (log scale)", fmt: fmtUs, log: true } })),
      table("latency", ["", "count", "min", "p50", "p90", "p99", "p99.9", "p99.99", "max",
        "mean", "stdev"], rows)];
  }

  // A threshold's measured value in its own unit: latencies in µs, errors a fraction.
  function thresholdValue(source, v) {
    if (!isNum(v)) return "-";
    const i = source.lastIndexOf(":");
    const expr = i >= 0 ? source.slice(i + 1) : source;
    const metric = expr.split(/[<>]/)[0].trim();
    if (metric === "errors") return fmtPct(v, 3);
    if (metric === "rate") return fmtRate(v) + " req/s";
    return fmtUs(v);
  }

  function environment(r) {
    const run = r.run || {}, k = r.kernel || {}, cpu = r.cpu || {}, c = r.counts || {};
    const items = [["gen version", run.version], ["target", `${run.method || ""} ${run.target || ""}`],
      ["load model", run.mode + (isNum(run.target_rate) ? ` at ${fmtRate(run.target_rate)} req/s` : "")],
      ["driver", run.driver], ["threads", fmtNum(run.threads)],
      ["connections", fmtNum(run.connections)],
      ["duration", `${fmtSecs(run.duration_s)} (warm-up ${fmtSecs(run.warmup_s)}, measured ${fmtSecs(run.measured_s)})`],
      ["started", isNum(run.started_at_unix_ms) ? new Date(run.started_at_unix_ms).toISOString() : "-"],
      ["kernel probes", (k.status || "absent") + (k.attach ? ` (${k.attach})` : "") +
        (k.reason ? `: ${k.reason}` : "")],
      ["generator CPU", `${fmtSecs(cpu.total_s)} (utilization ${fmtPct(cpu.utilization, 1)}, ` +
        `${fmtNum(cpu.us_per_response, 1)} µs/response)`],
      ["bytes", `${fmtBytes(c.bytes_sent)} sent, ${fmtBytes(c.bytes_received)} received`]];
    const workers = r.cluster && r.cluster.workers;
    if (Array.isArray(workers)) {
      items.push(["workers", `${workers.length}: ` +
        workers.map((w) => `${w.name} (${fmtNum(w.threads)} threads)`).join(", ")]);
    }
    return el("dl", { class: "env", id: "environment" },
      items.flatMap(([k2, v]) => [el("dt", {}, k2), el("dd", {}, v === undefined ? "-" : v)]));
  }

  function runPage(r) {
    const thresholds = r.thresholds || [];
    document.getElementById("verdict").append(...exitBadge(r.exit_code, r.generator_bound,
      thresholds.length > 0));
    if (r.generator_bound) {
      page.append(el("div", { class: "warning", id: "generator-bound" },
        el("strong", {}, "The generator was the bottleneck: these figures describe gen, not the target."),
        el("ul", {}, (r.generator_bound_reasons || []).map((b) => el("li", {}, b.message)))));
    }
    page.append(summaryCards(r));
    if (Array.isArray(r.endpoints) && r.endpoints.length) {
      page.append(section("Requests by name", endpointsTable(r.endpoints)));
    }
    page.append(section("Over time", seriesCharts(r)));
    page.append(section("Latency", spectrum(r)));
    if (thresholds.length) {
      page.append(section("Thresholds", table("thresholds", ["threshold", "measured", "verdict"],
        thresholds.map((t) => [t.threshold, thresholdValue(t.threshold, t.measured),
          verdictCell(t.pass, t.pass ? "pass" : "FAIL")]))));
    }
    page.append(section("Environment", environment(r)));
  }

  // ---- the capacity page ------------------------------------------------------------
  const VERDICTS = {
    "found": ["capacity found", ""], "not-reached": ["limit not reached", "warn"],
    "none-passed": ["no step met the SLOs", "bad"], "generator-bound": ["generator-bound", "warn"],
  };

  function capacityPage(doc) {
    const c = doc.capacity;
    const steps = c.steps;
    const [vtext, vcls] = VERDICTS[c.verdict] || [String(c.verdict), "warn"];
    document.getElementById("verdict").append(badge(vtext + (c.verdict === "found" &&
      isNum(c.max_ok_rate) ? `: ${fmtRate(c.max_ok_rate)} req/s` : ""), vcls));
    page.append(el("div", { class: "cards", id: "summary" },
      card("verdict", c.verdict || "-", null),
      card("max rate meeting the SLOs", isNum(c.max_ok_rate) ? fmtRate(c.max_ok_rate) + " req/s" : "-"),
      card("first rate that broke them", isNum(c.first_bad_rate) ? fmtRate(c.first_bad_rate) + " req/s" : "-"),
      card("SLOs", (c.slos || []).join(", ") || "-"),
      card("steps", fmtNum(steps.length))));
    if (c.why) page.append(el("p", { id: "why" }, c.why));
    const byRate = steps.map((s, i) => Object.assign({ index: i + 1 }, s))
      .filter((s) => isNum(s.rate)).sort((a, b) => a.rate - b.rate);
    const tip = (s) => `step ${s.index}: ${fmtRate(s.rate)} req/s, ` +
      (s.pass ? "pass" : `FAIL (${s.reason || "?"})`) + (s.detail ? `: ${s.detail}` : "");
    const msToUs = (v) => (isNum(v) ? v * 1000 : null);
    const marks = [{ x: c.max_ok_rate, label: `knee ${fmtRate(c.max_ok_rate)}`, color: "#1a7f37" }];
    if (isNum(c.first_bad_rate) && c.first_bad_rate !== c.max_ok_rate) {
      marks.push({ x: c.first_bad_rate, label: "first bad", color: "#c62828" });
    }
    page.append(section("Latency against offered rate", el("div", { class: "charts" },
      lineChart({ id: "chart-capacity", title: "Latency and errors against offered rate",
        series: [
          { name: "p50", pts: byRate.map((s) => [s.rate, msToUs(s.p50_ms)]) },
          { name: "p99", dots: true, pts: byRate.map((s) => [s.rate, msToUs(s.p99_ms), tip(s), s.pass]) },
          { name: "p99.9", pts: byRate.map((s) => [s.rate, msToUs(s.p999_ms)]) },
          { name: "error ratio", axis: "y2", dash: true, color: "#c62828",
            pts: byRate.map((s) => [s.rate, s.error_ratio]) }],
        x: { label: "offered rate (req/s)", fmt: (v) => fixed(v, 0) },
        y: { label: "response time (log scale)", fmt: fmtUs, log: true },
        y2: { label: "error ratio", fmt: (v) => fmtPct(v, 1) }, marks }))));
    page.append(section("Steps", table("steps", ["#", "offered req/s", "achieved req/s", "p50",
      "p99", "p99.9", "errors", "dropped", "lag p99", "verdict", "detail"], steps.map((s, i) => [
      String(i + 1), fmtRate(s.rate), fmtRate(s.achieved), fmtUs(msToUs(s.p50_ms)), fmtUs(msToUs(s.p99_ms)),
      fmtUs(msToUs(s.p999_ms)), fmtPct(s.error_ratio, 3), fmtNum(s.dropped), fmtUs(msToUs(s.lag_p99_ms)),
      verdictCell(s.pass, s.pass ? "pass" : "FAIL" + (s.reason ? `: ${s.reason}` : "")),
      el("td", { class: "text" }, s.detail || "")]))));
    const first = steps.find((s) => s.report && s.report.run);
    if (first) page.append(section("Environment (first step)", environment(first.report)));
    else page.append(el("p", { class: "note" }, `gen ${(doc.gen && doc.gen.version) || ""}`));
  }

  try {
    if (data && data.capacity && Array.isArray(data.capacity.steps)) capacityPage(data);
    else runPage(data || {});
  } catch (e) {
    page.append(el("p", { class: "warning" }, "This report could not be drawn: " + e));
    throw e;
  }
})();
