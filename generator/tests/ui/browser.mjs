// Headless Chromium as the browser tests launch it: Debian's chromium (CHROMIUM = its path),
// never a tool's own browser download, with the flags shared/NOTES.md lists for this machine.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync"],
  });
}
