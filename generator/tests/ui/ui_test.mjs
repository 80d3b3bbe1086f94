// Drives the coordinator UI like a user: start a run, watch charts and tables update, stop it;
// then the same in users mode.
// Usage: node ui_test.mjs COORDINATOR_URL TARGET_URL  (CHROMIUM = path of the browser)
import { launch } from "./browser.mjs";

const [coord, target] = process.argv.slice(2);
const fail = (msg) => { console.error("UI test failed: " + msg); process.exit(1); };
const browser = await launch();
const timer = setTimeout(() => fail("timed out"), 110_000);
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(coord);
  await page.waitForFunction(() => document.querySelectorAll("#workers tbody tr").length === 2, null, { timeout: 20_000 })
    .catch(() => fail("the workers table never showed 2 workers"));
  await page.fill("input[name=target]", target);
  await page.fill("input[name=rate]", "300");
  await page.fill("input[name=duration]", "60s");
  await page.click("#startbtn");
  // The run starts 3 s after the order; the series closes a second after it ends.
  await page.waitForFunction(() => +document.querySelector("#rps").textContent > 0, null, { timeout: 20_000 })
    .catch(() => fail("achieved req/s never rose above 0"));
  await page.waitForFunction(() => {
    const row = [...document.querySelectorAll("#stats tbody tr")].find((r) => r.cells[0].textContent === "Aggregated");
    return row && +row.cells[1].textContent > 600;
  }, null, { timeout: 20_000 }).catch(() => fail("the stats table did not count requests"));
  // The chart drew something: some pixel of the rate canvas is not transparent.
  const drawn = await page.evaluate(() => {
    const c = document.getElementById("c_rate");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  if (drawn < 100) fail(`rate chart is empty (${drawn} pixels)`);
  const phase = await page.textContent("#phase");
  if (phase !== "running") fail(`phase is ${phase}, expected running`);
  // Change the rate live: the target figure follows, then the achieved rate.
  await page.fill("input[name=newrate]", "600");
  await page.click("#ratebtn");
  await page.waitForFunction(() => document.querySelector("#target").textContent === "600", null, { timeout: 5_000 })
    .catch(() => fail("the target rate did not change"));
  await page.waitForFunction(() => +document.querySelector("#rps").textContent > 450, null, { timeout: 15_000 })
    .catch(() => fail("the achieved rate did not follow the new target"));
  await page.click("#stopbtn");
  await page.waitForFunction(() => document.querySelector("#phase").textContent === "finished", null, { timeout: 15_000 })
    .catch(() => fail("the run did not stop"));
  const shares = await page.$$eval("#workers tbody tr", (rows) => rows.map((r) => r.cells[3].textContent));
  // Users mode: 20 users split over the workers, 100 ms think: about 200 req/s.
  await page.selectOption("#mode", "users");
  await page.fill("input[name=users]", "20");
  await page.fill("input[name=spawn-rate]", "20");
  await page.fill("input[name=think]", "100ms");
  await page.click("#startbtn");
  await page.waitForFunction(() => document.querySelector("#users").textContent === "20 / 20", null, { timeout: 10_000 })
    .catch(() => fail("the users figure never showed 20 / 20"));
  await page.waitForFunction(() => +document.querySelector("#rps").textContent > 100, null, { timeout: 20_000 })
    .catch(() => fail("the users run's achieved rate never rose above 100"));
  const users = await page.$$eval("#workers tbody tr", (rows) => rows.map((r) => +r.cells[4].textContent));
  if (users.reduce((a, b) => a + b, 0) !== 20) fail("workers' users do not sum to 20: " + users.join(", "));
  await page.click("#stopbtn");
  await page.waitForFunction(() => document.querySelector("#phase").textContent === "finished", null, { timeout: 15_000 })
    .catch(() => fail("the users run did not stop"));
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("UI ok: workers", shares.join(", "), "- users", users.join(", "), "- chart pixels", drawn);
} finally {
  clearTimeout(timer);
  await browser.close();
}
