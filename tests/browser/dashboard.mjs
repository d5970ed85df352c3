// Drives the dashboard in headless chromium for tests/it/dashboard.rs, which starts the
// gateway and keeps publishing from real MQTT clients while this runs:
//   lock-a, lock-b -> devices/<id>/state -> Kafka topic message_state (message_state.wasm)
//   sensor-1       -> sensors/sensor-1   -> Kafka topic sensor_data   (sensor.wat)
//
// Usage: node dashboard.mjs DASHBOARD_URL SCREENSHOT_DIR
// Browser: $CHROMIUM_BIN, default /usr/bin/chromium (Debian's `chromium` package).
// Prints one line per check passed and the path of each screenshot; exits non-zero with
// the reason on the first failed check.

import { existsSync } from "node:fs";
import { join } from "node:path";

const [url, screenshots] = process.argv.slice(2);
if (!url || !screenshots) fail("usage: node dashboard.mjs DASHBOARD_URL SCREENSHOT_DIR");

// Every wait is bounded: a check that does not hold in this time fails the test.
const WAIT_MS = 20_000;

function fail(message) {
  console.error(`dashboard test failed: ${message}`);
  process.exit(1);
}

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  fail(`cannot load playwright-core (${e.message}); install it with \`npm install --prefix tests/browser\` (.ci/run does)`);
}
const executablePath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
if (!existsSync(executablePath)) {
  fail(`no chromium at ${executablePath}; install Debian's package with \`apt-get install chromium\` (.ci/run does)`);
}

const browser = await chromium.launch({ executablePath, headless: true, args: ["--disable-dev-shm-usage"] });
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", e => errors.push(`page error: ${e.message}`));
  page.on("console", m => { if (m.type() === "error") errors.push(`console error: ${m.text()} (${m.location().url})`); });
  page.setDefaultTimeout(WAIT_MS);

  // Waits for `check` (run in the page) to hold; names the check when it does not.
  async function waitIn(what, check, arg) {
    try {
      await page.waitForFunction(check, arg, { timeout: WAIT_MS, polling: 100 });
    } catch (e) {
      await shot("failed");
      fail(`${what} (not within ${WAIT_MS} ms)`);
    }
    console.log(`ok: ${what}`);
  }

  async function shot(name) {
    const path = join(screenshots, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    console.log(`screenshot: ${path}`);
  }

  // Rows of the tail table as plain data.
  const tailRows = () => page.$$eval("#tail tbody tr", rows => rows.map(r => ({ topic: r.dataset.topic, client: r.dataset.client })));

  await page.goto(url);

  await waitIn("rules table lists message_state.wasm and sensor.wat with their subscriptions", () => {
    const text = file => document.querySelector(`#rules tr[data-file="${file}"]`)?.textContent ?? "";
    return text("message_state.wasm").includes("message.publish devices/+/state")
      && text("sensor.wat").includes("message.publish sensors/+");
  });
  await waitIn("rule files that failed to load are listed with the reason and that nothing of them routes", () => {
    const row = document.querySelector('#rules-failed tr[data-file="broken.wat"]');
    return !document.getElementById("rules-failed-box").hidden && row
      && row.cells[1].textContent.trim().length > 0 && row.cells[3].textContent === "not loaded: routes nothing";
  });
  await waitIn("readiness shows ready", () => document.getElementById("readiness").textContent === "ready");
  await waitIn("rule call counters count the published messages", () =>
    Number(document.querySelector('#rules tr[data-file="message_state.wasm"] td:nth-child(5)').textContent) > 0);
  await waitIn("guest time per call is a dash until a call was timed, then nanoseconds", () =>
    [...document.querySelectorAll("#rules tbody tr")].every(r => /^(–|[\d,.]+ ns)$/.test(r.cells[7].textContent)));

  await waitIn("tail is watching, unfiltered", () =>
    document.getElementById("tail-status").textContent === "watching: topic any, client any");
  await waitIn("tail shows records of both Kafka topics and all three clients", () => {
    const rows = [...document.querySelectorAll("#tail tbody tr")];
    const has = (key, value) => rows.some(r => r.dataset[key] === value);
    return has("topic", "message_state") && has("topic", "sensor_data")
      && has("client", "lock-a") && has("client", "lock-b") && has("client", "sensor-1");
  });
  const newest = await page.$eval("#tail tbody tr", r => r.textContent);
  await waitIn("tail keeps updating while the clients publish", previous =>
    document.querySelector("#tail tbody tr").textContent !== previous, newest);
  await waitIn("tail shows a UTF-8 payload as text", () =>
    [...document.querySelectorAll("#tail tbody tr pre.payload")].some(p => p.textContent.includes('"battery":83.4')));
  await waitIn("throughput shows messages in and records routed per second", () => {
    const number = id => Number(document.getElementById(id).textContent.replace(/\D/g, ""));
    return number("messages-rate") > 0 && number("routed-rate") > 0;
  });
  await waitIn("throughput shows the delivery latency p50 / p99 in ms", () =>
    /^[\d.,]+ ms \/ [\d.,]+ ms$/.test(document.getElementById("latency").textContent));
  await waitIn("charts draw messages in, records delivered and latency over time", () =>
    ["chart-messages", "chart-records", "chart-latency"].every(id => {
      const canvas = document.getElementById(id);
      if (Number(canvas.dataset.points) < 3 || !(Number(canvas.dataset.max) > 0)) return false;
      // Pixels of the drawn lines (not the light grid): the chart is drawn, not blank.
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      let inked = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && data[i] < 200) inked++;
      return inked > 50;
    }));
  await waitIn("cluster view lists this node, alive, with its sessions and connections", () => {
    const row = document.querySelector('#cluster tr[data-node="dashboard-node"]');
    if (!row) return false;
    const cells = [...row.cells].map(c => c.textContent);
    return cells[0].includes("this node") && cells[1] === "alive" && Number(cells[2]) === 3 && Number(cells[3]) === 3
      && /cluster hookline, seen from dashboard-node: 1 nodes alive, 3 sessions \(3 connected\)/.test(document.getElementById("cluster-summary").textContent);
  });
  await shot("1-unfiltered");

  // The server keeps the charts' history: a page opened now draws at once at least the
  // points the page before it had gathered (its first drawing has them all), not one.
  const before = await page.$eval("#chart-messages", c => Number(c.dataset.points));
  await page.reload();
  await waitIn("after a reload the charts draw again", () => Number(document.getElementById("chart-messages").dataset.points) > 0);
  const points = await page.$eval("#chart-messages", c => Number(c.dataset.points));
  if (points < before) fail(`after a reload the chart drew ${points} points at first, the page before had ${before}: the server's history was not shown`);
  console.log(`ok: after a reload the chart drew ${points} points of the server's history at once (the page before had ${before})`);

  await page.fill("#filter-topic", "message_state");
  await waitIn("tail is watching, filtered by topic", () =>
    document.getElementById("tail-status").textContent === "watching: topic message_state, client any");
  await waitIn("tail shows new records of both locks", () => {
    const rows = [...document.querySelectorAll("#tail tbody tr")];
    return rows.some(r => r.dataset.client === "lock-a") && rows.some(r => r.dataset.client === "lock-b");
  });
  const byTopic = await tailRows();
  const offTopic = byTopic.filter(r => r.topic !== "message_state");
  if (offTopic.length) fail(`topic filter message_state let through ${JSON.stringify(offTopic)}`);
  console.log(`ok: topic filter: all ${byTopic.length} rows are message_state`);
  await shot("2-topic-filter");

  await page.fill("#filter-client", "lock-b");
  await waitIn("tail is watching, filtered by topic and client", () =>
    document.getElementById("tail-status").textContent === "watching: topic message_state, client lock-b");
  await waitIn("tail shows at least 3 new records", () => document.querySelectorAll("#tail tbody tr").length >= 3);
  const byClient = await tailRows();
  const offClient = byClient.filter(r => r.topic !== "message_state" || r.client !== "lock-b");
  if (offClient.length) fail(`filter message_state + lock-b let through ${JSON.stringify(offClient)}`);
  console.log(`ok: client filter: all ${byClient.length} rows are lock-b on message_state`);
  await shot("3-topic-and-client-filter");

  if (errors.length) fail(errors.join("; "));
} finally {
  await browser.close();
}
