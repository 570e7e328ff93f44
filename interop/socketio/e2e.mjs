// Opens /demo twice in headless Chromium with fake media; the two pages join the same
// appointment's room through the signaling service, and the answer says whether each side
// decodes video frames (RTCPeerConnection.getStats). One JSON request on stdin, one answer out.
import { chromium } from "playwright-core";

const WAIT_MS = 30000;

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const { url, appointment, tokens } = JSON.parse(input);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
  ],
});

async function framesDecoded(page) {
  return page.evaluate(async () => {
    if (!window.demo.pc) return 0;
    const stats = await window.demo.pc.getStats();
    let frames = 0;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") frames += report.framesDecoded || 0;
    });
    return frames;
  });
}

try {
  const context = await browser.newContext();
  const pages = [];
  for (const token of tokens) {
    const page = await context.newPage();
    await page.goto(`${url}/demo?token=${encodeURIComponent(token)}&appointment=${appointment}`);
    await page.click("#join");
    // the second joins once the first is in the room, so the first makes the offer
    await page.waitForFunction(() => window.demo.events.some((e) => e.startsWith("joined-room")), null, { timeout: WAIT_MS });
    pages.push(page);
  }
  const deadline = Date.now() + WAIT_MS;
  let frames = [0, 0];
  while (Date.now() < deadline) {
    frames = await Promise.all(pages.map(framesDecoded));
    if (frames.every((f) => f > 10)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  // the mute button sends toggle-audio; the other page hears of it
  await pages[1].click("#mute");
  await pages[0].waitForFunction(() => window.demo.events.some((e) => e.startsWith("audio-toggled")), null, { timeout: WAIT_MS });
  const events = await Promise.all(pages.map((p) => p.evaluate(() => window.demo.events)));
  process.stdout.write(JSON.stringify({ frames, events }));
  await browser.close();
  process.exit(0);
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String((error && error.stack) || error) }));
  await browser.close();
  process.exit(1);
}
