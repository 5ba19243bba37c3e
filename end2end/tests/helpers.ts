import { expect, type Page } from "@playwright/test";

/** Collects console errors and uncaught exceptions of a page. */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  return errors;
}

/** On /record: connects the fake camera and records `seconds`, returns the saved id. */
export async function recordClip(page: Page, seconds: number): Promise<string> {
  const status = page.getByTestId("status");
  if ((await status.getAttribute("data-state")) !== "ready") {
    await page.getByTestId("connect").click();
    await expect(status).toHaveAttribute("data-state", "ready");
  }
  await page.getByTestId("record").click();
  await expect(status).toHaveAttribute("data-state", "recording", { timeout: 20_000 });
  await page.waitForTimeout(seconds * 1000);
  await page.getByTestId("stop").click();
  const saved = page.getByTestId("saved");
  await expect(saved).toBeVisible({ timeout: 20_000 });
  await expect(status).toHaveAttribute("data-state", "ready");
  const id = await saved.getAttribute("data-id");
  expect(id).toBeTruthy();
  return id!;
}

export interface Meta {
  id: string;
  name: string;
  duration_ms: number;
  video_codec: string | null;
  width: number;
  height: number;
  video_frames: number;
  audio: boolean;
  audio_frames: number;
  bytes: number;
  state: string;
  container: string;
}
