// Opens the monitoring live stream with the browser's own EventSource in headless Chromium
// (which cannot send an Authorization header: the URL carries a single-use ticket), and
// collects its events until each awaited rep has been seen. One JSON request on stdin
// ({ origin, path, reps, timeoutMs }), one answer out ({ events, errors }).
import { chromium } from "playwright-core";

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const { origin, path, reps, timeoutMs } = JSON.parse(input);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

try {
  const page = await browser.newPage();
  // A page of the service's own origin, so the stream is same-origin (no CORS involved).
  await page.goto(`${origin}/healthz`);
  const answer = await page.evaluate(
    ({ path, reps, timeoutMs }) =>
      new Promise((resolve) => {
        const events = [];
        const errors = [];
        const source = new EventSource(path);
        const done = () => {
          source.close();
          resolve({ events, errors });
        };
        const seen = () => reps.every((rep) => events.some((e) => e.data && e.data.repUserId === rep));
        for (const name of ["reset", "ready", "rep.presence_changed", "session.started", "session.mode_changed", "session.stopped", "expired"]) {
          source.addEventListener(name, (e) => {
            events.push({ name, id: e.lastEventId, data: JSON.parse(e.data) });
            if (seen()) done();
          });
        }
        source.onerror = () => errors.push(source.readyState);
        setTimeout(done, timeoutMs);
      }),
    { path, reps, timeoutMs },
  );
  process.stdout.write(JSON.stringify(answer));
  await browser.close();
  process.exit(0);
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String((error && error.stack) || error) }));
  await browser.close();
  process.exit(1);
}
