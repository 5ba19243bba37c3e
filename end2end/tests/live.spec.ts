import { test, expect } from "@playwright/test";
import { watchConsole } from "./helpers";

// One page records; the home page shows the recording in progress with "watch live"; a second
// page follows that link and decodes frames while the first page is still recording.
test("a recording in progress can be watched live from the home page", async ({ browser }) => {
  test.setTimeout(120_000);
  const recorderPage = await browser.newPage();
  const viewerPage = await browser.newPage();
  const errors = watchConsole(viewerPage);

  await recorderPage.goto("/record");
  await recorderPage.waitForLoadState("networkidle");
  const recStatus = recorderPage.getByTestId("status");
  await recorderPage.getByTestId("connect").click();
  await expect(recStatus).toHaveAttribute("data-state", "ready");
  await recorderPage.getByTestId("record").click();
  await expect(recStatus).toHaveAttribute("data-state", "recording", { timeout: 20_000 });

  // The home page lists it as recording, with a way to watch it.
  await viewerPage.goto("/");
  const row = viewerPage.locator('[data-testid="recording-row"][data-state="recording"]');
  await expect(row).toHaveCount(1, { timeout: 15_000 });
  const watch = row.getByTestId("watch-live");
  await expect(watch).toBeVisible();
  const id = await row.getAttribute("data-id");
  await watch.click();
  await expect(viewerPage).toHaveURL(new RegExp(`/play\\?live=${id}`));
  await viewerPage.waitForLoadState("networkidle");
  await expect(viewerPage.getByTestId("recording-select")).toHaveValue(`live:${id}`);

  await viewerPage.getByTestId("connect").click();
  await viewerPage.getByTestId("play").click();
  const status = viewerPage.getByTestId("status");
  await expect(status).toHaveAttribute("data-state", "playing", { timeout: 20_000 });
  // Frames keep being decoded while the other page records.
  const frames = viewerPage.getByTestId("frames-decoded");
  await expect.poll(async () => Number(await frames.textContent()), { timeout: 15_000 }).toBeGreaterThan(10);
  const before = Number(await frames.textContent());
  await viewerPage.waitForTimeout(2000);
  const after = Number(await frames.textContent());
  expect(after).toBeGreaterThan(before + 20);
  await expect(recStatus).toHaveAttribute("data-state", "recording");
  expect(Number(await viewerPage.getByTestId("audio-packets").textContent())).toBeGreaterThan(20);

  // The recording stops: the live playback ends with it.
  await recorderPage.getByTestId("stop").click();
  await expect(recorderPage.getByTestId("saved")).toBeVisible({ timeout: 20_000 });
  await expect(status).toHaveAttribute("data-state", "finished", { timeout: 15_000 });
  expect(errors).toEqual([]);
  await recorderPage.close();
  await viewerPage.close();
});
