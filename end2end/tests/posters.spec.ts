import { test, expect } from "@playwright/test";
import { recordClip, watchConsole } from "./helpers";

// A finished recording shows its poster (a JPEG of its first picture) in the list on /.
test("the list shows each finished recording's poster", async ({ page, request }) => {
  const errors = watchConsole(page);
  await page.goto("/record");
  await page.waitForLoadState("networkidle");
  const id = await recordClip(page, 2);
  const poster = await request.get(`/api/recordings/${id}/thumbnail`);
  expect(poster.status()).toBe(200);
  expect(poster.headers()["content-type"]).toBe("image/jpeg");

  await page.goto("/");
  const img = page.locator(`[data-testid="recording-row"][data-id="${id}"] [data-testid="thumbnail"]`);
  await expect(img).toHaveAttribute("loading", "lazy");
  await img.scrollIntoViewIfNeeded();
  // Decoded by the browser: a real picture, 320 px wide (the server scales posters to 320).
  await expect.poll(async () => img.evaluate((el: HTMLImageElement) => el.complete ? el.naturalWidth : 0), { timeout: 10_000 }).toBe(320);
  expect(errors).toEqual([]);
});
