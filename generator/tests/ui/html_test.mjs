// Opens a gen HTML report (a local file) in headless Chromium and checks it like a reader
// would: no script errors, no network request, the charts drawn, the tables with their rows,
// and a screenshot that is not blank.
// Usage: node html_test.mjs REPORT.html SCREENSHOT.png EXPECT_JSON  (CHROMIUM = browser path)
// EXPECT_JSON: {"charts": [figure ids], "rows": {table id: row count}, "cells": [texts that
// must appear in some table cell], "badge": text the verdict must contain}
import { launch } from "./browser.mjs";
import { pathToFileURL } from "node:url";

const [file, shot, expectJson] = process.argv.slice(2);
const expect = JSON.parse(expectJson);
const fail = (msg) => { console.error("HTML report test failed: " + msg); process.exit(1); };
const browser = await launch();
const timer = setTimeout(() => fail("timed out"), 60_000);
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push("page error: " + e));
  page.on("console", (m) => { if (m.type() === "error") errors.push("console error: " + m.text()); });
  const fetched = [];
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("file:") || url.startsWith("data:")) return route.continue();
    fetched.push(url);
    return route.abort();
  });
  await page.goto(pathToFileURL(file).href);
  await page.waitForLoadState("load");
  if (errors.length) fail(errors.join("; "));
  if (fetched.length) fail("the page tried to fetch " + fetched.join(", "));
  // A request name such as </script><script>... must stay text.
  if (await page.evaluate(() => window.pwned !== undefined)) fail("a script from the data ran");

  for (const id of expect.charts || []) {
    const drawn = await page.evaluate((id) => {
      const fig = document.getElementById(id);
      if (!fig) return "missing";
      const lines = [...fig.querySelectorAll("svg path.line")];
      // A drawn line has at least one segment: a move and a line-to.
      const segs = lines.filter((p) => /M[^M]*L/.test(p.getAttribute("d") || "")).length;
      const box = fig.querySelector("svg").getBoundingClientRect();
      return segs > 0 && box.width > 200 && box.height > 80 ? "ok" : `no line (${lines.length} paths)`;
    }, id);
    if (drawn !== "ok") fail(`chart ${id}: ${drawn}`);
  }
  for (const [id, n] of Object.entries(expect.rows || {})) {
    const got = await page.$$eval(`#${id} tbody tr`, (rows) => rows.length);
    if (got !== n) fail(`table ${id} has ${got} rows, expected ${n}`);
  }
  const cells = await page.$$eval("td", (tds) => tds.map((td) => td.textContent));
  for (const text of expect.cells || []) {
    if (!cells.includes(text)) fail(`no table cell reads ${JSON.stringify(text)}`);
  }
  if (expect.badge) {
    const badge = await page.textContent("#verdict", { timeout: 5_000 }).catch(() => null);
    if (!badge || !badge.includes(expect.badge)) fail(`verdict "${badge}" lacks "${expect.badge}"`);
  }

  const png = await page.screenshot({ path: shot, fullPage: true });
  // Count the screenshot's non-white pixels in a blank page (a data: image never taints).
  const blank = await browser.newPage();
  const inked = await blank.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
    return { n, total: d.length / 4 };
  }, "data:image/png;base64," + png.toString("base64"));
  if (inked.n < inked.total * 0.01) fail(`screenshot is nearly blank (${inked.n} of ${inked.total} pixels inked)`);
  if (errors.length) fail(errors.join("; "));
  console.log(`HTML ok: ${file} (${inked.n} of ${inked.total} pixels inked) -> ${shot}`);
} finally {
  clearTimeout(timer);
  await browser.close();
}
