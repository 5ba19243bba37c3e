import { test, expect } from "@playwright/test";
import { watchConsole } from "./helpers";

for (const path of ["/", "/record", "/play"]) {
  test(`${path} renders and hydrates without console errors`, async ({ page }) => {
    const errors = watchConsole(page);
    const res = await page.goto(path);
    expect(res?.status()).toBe(200);
    await expect(page.locator("header")).toContainText("pion-the-sky");
    await page.waitForLoadState("networkidle");
    if (path === "/") {
      await expect(page.getByTestId("choose-record")).toBeVisible();
      await expect(page.getByTestId("choose-play")).toBeVisible();
      // Hydrated: client-side navigation through the router.
      await page.getByTestId("choose-play").click();
      await expect(page).toHaveURL(/\/play$/);
      await expect(page.getByTestId("connect")).toBeVisible();
    } else {
      // Hydrated: a click changes state.
      const status = page.getByTestId("status");
      const before = await status.getAttribute("data-state");
      await page.getByTestId("connect").click();
      await expect(status).not.toHaveAttribute("data-state", before ?? "");
    }
    expect(errors).toEqual([]);
  });
}

test("the fake camera gives a live preview on /record", async ({ page }) => {
  const errors = watchConsole(page);
  await page.goto("/record");
  await page.waitForLoadState("networkidle");
  await page.getByTestId("connect").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-state", "ready");
  const preview = page.getByTestId("preview");
  await expect
    .poll(() => preview.evaluate((v: HTMLVideoElement) => v.videoWidth), { timeout: 15_000 })
    .toBeGreaterThan(0);
  const t0 = await preview.evaluate((v: HTMLVideoElement) => v.currentTime);
  await page.waitForTimeout(1000);
  const t1 = await preview.evaluate((v: HTMLVideoElement) => v.currentTime);
  expect(t1).toBeGreaterThan(t0);
  expect(errors).toEqual([]);
});

test("an unknown page is a 404 with a way back", async ({ page }) => {
  const res = await page.goto("/nowhere");
  expect(res?.status()).toBe(404);
  await expect(page.getByRole("link", { name: /back/i })).toBeVisible();
});
