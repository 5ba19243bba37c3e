import { defineConfig } from "@playwright/test";
import * as os from "node:os";
import * as path from "node:path";
import * as fs from "node:fs";

// `cargo leptos end-to-end` serves the app on :8082 (default video codec h264) and runs this.
// A second server with -vcodec=vp8 runs on :8083 for the VP8 recording tests, a third with
// --token on :8084 for the access tests.
const vp8Data = fs.mkdtempSync(path.join(os.tmpdir(), "pion-e2e-vp8-"));
const tokenData = fs.mkdtempSync(path.join(os.tmpdir(), "pion-e2e-token-"));

export default defineConfig({
  testDir: "./tests",
  timeout: 90_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: "http://localhost:8082",
    trace: "off",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-gpu",
      ],
    },
  },
  webServer: [
    {
      command: `../target/release/pion-the-sky -port=8083 -vcodec=vp8 --bind=127.0.0.1 --ice-ip=127.0.0.1 --udp-port=0 --site-root=../target/site --data-dir=${vp8Data}`,
      url: "http://localhost:8083/healthz",
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "ignore",
      stderr: "pipe",
    },
    // A server with an access token (access.spec.ts): loopback is not trusted with it.
    {
      command: `../target/release/pion-the-sky -port=8084 -vcodec=vp8 --bind=127.0.0.1 --ice-ip=127.0.0.1 --udp-port=0 --site-root=../target/site --data-dir=${tokenData} --token=e2e-token`,
      url: "http://localhost:8084/healthz",
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "ignore",
      stderr: "pipe",
    },
  ],
});
