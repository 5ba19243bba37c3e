import { test, expect } from "@playwright/test";
import { recordClip, type Meta } from "./helpers";

// :8084 runs with --token=e2e-token (playwright.config.ts): with a token set by the operator,
// even a browser on this machine needs it to record.
const base = "http://localhost:8084";

test("without the token, recording is refused with a message that says what to do", async ({ page }) => {
  await page.goto(`${base}/record`);
  await page.waitForLoadState("networkidle");
  await page.getByTestId("connect").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-state", "ready");
  await page.getByTestId("record").click();
  const error = page.getByTestId("error-text");
  await expect(error).toBeVisible({ timeout: 20_000 });
  await expect(error).toContainText("token");
});

test("opening /?token= once signs the browser in; then it records", async ({ page, request }) => {
  await page.goto(`${base}/?token=e2e-token`);
  // The token left the address (a redirect), and the cookie stays with the browser.
  expect(new URL(page.url()).search).toBe("");
  const cookies = await page.context().cookies(base);
  const session = cookies.find((c) => c.name === "pion_session");
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe("Strict");

  await page.goto(`${base}/record`);
  await page.waitForLoadState("networkidle");
  const id = await recordClip(page, 2);

  // Scripts use the same token as a bearer; without it, a write is a 401 with a JSON error.
  const meta: Meta = await (await request.get(`${base}/api/recordings/${id}`)).json();
  expect(meta.state).toBe("complete");
  const refused = await request.delete(`${base}/api/recordings/${id}`);
  expect(refused.status()).toBe(401);
  expect((await refused.json()).error).toContain("token");
  const deleted = await request.delete(`${base}/api/recordings/${id}`, {
    headers: { Authorization: "Bearer e2e-token" },
  });
  expect(deleted.status()).toBe(204);
});
