import { test, expect } from "@playwright/test";
import { recordClip, watchConsole, type Meta } from "./helpers";

// :8082 is served by `cargo leptos end-to-end` (default -vcodec=h264); :8083 runs -vcodec=vp8
// (playwright.config.ts starts it).
const servers = [
  { codec: "h264", base: "http://localhost:8082", container: "mp4", mime: "video/mp4" },
  { codec: "vp8", base: "http://localhost:8083", container: "webm", mime: "video/webm" },
];

for (const s of servers) {
  test(`records ~3 s of camera and microphone as ${s.codec}, lists it, and the download plays`, async ({ page, request }) => {
    const errors = watchConsole(page);
    await page.goto(`${s.base}/record`);
    await page.waitForLoadState("networkidle");
    const id = await recordClip(page, 3);

    const meta: Meta = await (await request.get(`${s.base}/api/recordings/${id}`)).json();
    expect(meta.state).toBe("complete");
    expect(meta.video_codec).toBe(s.codec);
    expect(meta.container).toBe(s.container);
    expect(meta.audio).toBe(true);
    expect(meta.audio_frames).toBeGreaterThan(50);
    expect(meta.duration_ms).toBeGreaterThan(2000);
    expect(meta.duration_ms).toBeLessThan(6000);
    expect(meta.width).toBeGreaterThan(0);
    expect(meta.video_frames).toBeGreaterThan(20);

    // The list on / shows it.
    await page.goto(`${s.base}/`);
    const row = page.locator(`[data-testid="recording-row"][data-id="${id}"]`);
    await expect(row).toBeVisible();
    await expect(row).toContainText(s.codec.toUpperCase());

    // The download plays in a <video>.
    const file = await request.get(`${s.base}/api/recordings/${id}/file`);
    expect(file.status()).toBe(200);
    expect(file.headers()["content-type"]).toContain(s.mime);
    const played = await page.evaluate(async (src) => {
      const v = document.createElement("video");
      v.muted = true;
      v.src = src;
      document.body.appendChild(v);
      await new Promise((ok, fail) => {
        v.onloadedmetadata = ok;
        v.onerror = () => fail(new Error(`video error ${v.error?.code} ${v.error?.message}`));
        setTimeout(() => fail(new Error("no metadata")), 10_000);
      });
      await v.play();
      await new Promise((ok) => setTimeout(ok, 1200));
      const r = { duration: v.duration, currentTime: v.currentTime, width: v.videoWidth };
      v.remove();
      return r;
    }, `${s.base}/api/recordings/${id}/file`);
    expect(played.width).toBeGreaterThan(0);
    expect(played.currentTime).toBeGreaterThan(0.5);
    expect(played.duration).toBeGreaterThan(2);
    expect(played.duration).toBeLessThan(6);
    expect(errors).toEqual([]);
  });
}

test("both codecs are listed with plausible durations", async ({ request }) => {
  for (const s of servers) {
    const list: Meta[] = await (await request.get(`${s.base}/api/recordings`)).json();
    const mine = list.filter((m) => m.video_codec === s.codec);
    expect(mine.length).toBeGreaterThan(0);
    for (const m of mine) {
      expect(m.duration_ms).toBeGreaterThan(1000);
      expect(m.duration_ms).toBeLessThan(10 * 60 * 1000);
    }
  }
});
