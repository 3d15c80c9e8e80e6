// The operator console in a real browser: Debian's chromium driven by playwright-core.
// Run by tests/it/console.rs, which starts the gateway on a log of >= 100k records and passes:
//   GH_URL        base URL of the HTTP listener
//   GH_OPERATOR   an operator's name (password "secret")
//   GH_USER       a non-operator's name (password "secret")
//   GH_EXPECT     JSON: {"user": "u3", "action": "upload", "count": N, "total": M}
//   GH_HOLD       JSON: [python, hold_session.py, sftp port, user, password, remote path]
//   GH_SHOTS      directory for the screenshots
//   GH_PLAYWRIGHT path of the playwright-core package
// Prints one line per step; exits non-zero (with the reason) on the first failure.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("GH_URL");
const shots = env("GH_SHOTS");
const expect = JSON.parse(env("GH_EXPECT"));
const hold = JSON.parse(env("GH_HOLD"));
const require = createRequire(import.meta.url);
const { chromium } = require(env("GH_PLAYWRIGHT"));
mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok: ${what}`);
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function login(page, user) {
  await page.goto(`${base}/console/login`);
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill("secret");
  const [resp] = await Promise.all([
    page.waitForNavigation(),
    page.getByRole("button", { name: "Log in" }).click(),
  ]);
  return resp;
}

const countOf = async (page) => Number((await page.locator("#count").textContent()).trim());
const seqs = async (page) =>
  (await page.locator("details.rec").evaluateAll((els) => els.map((e) => Number(e.dataset.seq))));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
let holder;
try {
  // Anonymous: to the login form. A non-operator: refused.
  const ctx0 = await browser.newContext();
  const p0 = await ctx0.newPage();
  await p0.goto(`${base}/console/audit`);
  check(p0.url().endsWith("/console/login"), "an anonymous visit lands on the login form");
  const refused = await login(p0, env("GH_USER"));
  check(refused.status() === 403, `a non-operator is refused (${refused.status()})`);
  check((await p0.textContent("h1")).includes("Operators only"), "the refusal says operators only");
  await shot(p0, "refused");
  await ctx0.close();

  const ctx = await browser.newContext({ acceptDownloads: true });
  const page = await ctx.newPage();
  const ok = await login(page, env("GH_OPERATOR"));
  check(ok.status() === 200 && page.url().includes("/console/audit"), "the operator logs in");
  const cookies = await ctx.cookies();
  const c = cookies.find((x) => x.name === "gh_console");
  check(c && c.httpOnly && c.sameSite === "Strict", "the session cookie is HttpOnly and SameSite=Strict");
  const total = await countOf(page);
  check(total >= expect.total, `the audit page counts the whole log (${total} >= ${expect.total})`);
  await shot(page, "audit");

  // Filter.
  await page.getByLabel("User").fill(expect.user);
  await page.getByLabel("Action").selectOption(expect.action);
  const t0 = Date.now();
  await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Search" }).click()]);
  const filtered = await countOf(page);
  check(filtered === expect.count, `the filter finds ${expect.count} records (${filtered}, ${Date.now() - t0} ms)`);
  const users = await page.locator("details.rec .user").allTextContents();
  const actions = await page.locator("details.rec .action").allTextContents();
  check(users.length === 50 && users.every((u) => u === expect.user) && actions.every((a) => a === expect.action),
    "every row of the first page matches the filter");
  const first = await seqs(page);
  check(first.every((s, i) => i === 0 || s < first[i - 1]), "rows are newest first");
  await shot(page, "audit-filtered");

  // Pages.
  await Promise.all([page.waitForNavigation(), page.getByRole("link", { name: "Older →" }).first().click()]);
  const second = await seqs(page);
  check(second.length === 50 && second[0] < first[first.length - 1], "Older → shows the next 50, all older");
  await Promise.all([page.waitForNavigation(), page.getByRole("link", { name: "← Newer" }).first().click()]);
  const back = await seqs(page);
  check(JSON.stringify(back) === JSON.stringify(first), "← Newer comes back to the first page");

  // Expand one record.
  await page.locator("details.rec summary").first().click();
  const pre = await page.locator("details.rec[open] pre").first().textContent();
  check(pre.includes('"hash"') && pre.includes(`"user": "${expect.user}"`), "a record expands to its full JSON");

  // Exports of the filtered view.
  const [csv] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "CSV" }).click()]);
  const csvText = readFileSync(await csv.path(), "utf8").trimEnd().split("\n");
  check(csvText[0].startsWith("seq,ts,node") && csvText.length === expect.count + 1,
    `the CSV export has the header and ${expect.count} rows (${csvText.length - 1})`);
  const [jl] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "JSON Lines" }).click()]);
  const lines = readFileSync(await jl.path(), "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
  check(lines.length === expect.count && lines.every((r) => r.user === expect.user && r.action === expect.action),
    `the JSON Lines export has the ${expect.count} matching records`);

  // Live tail and live sessions while a partner uploads over SFTP.
  const tail = await ctx.newPage();
  await tail.goto(`${base}/console/tail`);
  await tail.waitForFunction(() => document.getElementById("tail-status").textContent.startsWith("Connected"));
  check(true, "the live tail is connected");
  const sessions = await ctx.newPage();
  await sessions.goto(`${base}/console/sessions`);
  const remote = hold[5];
  holder = spawn(hold[0], hold.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  holder.stdout.on("data", (d) => { out += d; });
  const exited = new Promise((res) => holder.on("exit", (code) => res(code)));
  const row = sessions.locator("tr[data-session]", { hasText: remote });
  await row.waitFor({ timeout: 20000 });
  check(await row.locator("progress, .transfer").count() > 0, "the upload shows in live sessions while in flight");
  await shot(sessions, "sessions");
  const rec = tail.locator("details.rec", { hasText: remote }).filter({ hasText: "upload" });
  await rec.first().waitFor({ timeout: 30000 });
  check(true, "the finished upload appears in the live tail");
  await shot(tail, "tail");
  const live = sessions.locator("tr[data-session]", { hasText: hold[3] });
  await live.first().waitFor({ timeout: 10000 });
  await Promise.all([sessions.waitForNavigation(), live.first().getByRole("button", { name: "End session" }).click()]);
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 15000))]);
  check(code === 0 && out.includes("ended"), `the client saw its session ended (${code}, ${out.trim().split("\n").pop()})`);
  holder = undefined;
  await tail.locator("details.rec", { hasText: "logout" }).first().waitFor({ timeout: 10000 });
  const logout = await tail.locator("details.rec", { hasText: "logout" }).first().locator("pre").textContent();
  check(logout.includes(`ended by operator ${env("GH_OPERATOR")}`), "the logout record names the operator");
  await sessions.reload();
  check(await sessions.locator("tr[data-session]", { hasText: hold[3] }).count() === 0, "the ended session is gone from live sessions");

  // Per-user history, chain, overview.
  await page.goto(`${base}/console/users/${expect.user}`);
  check((await page.locator("table.history tbody tr").count()) > 0, "the user history lists logins and transfers");
  await shot(page, "user");
  await page.goto(`${base}/console/chain`);
  check((await page.textContent("#chain-state")).startsWith("Intact"), "the chain status is intact");
  await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Verify every file now" }).click()]);
  // The verification runs in the background: reload until it reports (bounded).
  const until = Date.now() + 60000;
  let verdict = "";
  while (Date.now() < until) {
    verdict = (await page.textContent("#full-verify")).trim();
    if (verdict.startsWith("ok: ") || verdict.startsWith("FAILED")) break;
    await new Promise((r) => setTimeout(r, 300));
    await page.reload();
  }
  console.log(`whole chain: ${verdict}`);
  check((await page.textContent("#full-verify")).startsWith("ok: "), "a whole-chain verification runs and passes");
  await shot(page, "chain");
  await page.goto(`${base}/console/overview`);
  check((await page.locator("svg.chart").count()) >= 2, "the overview draws its charts");
  await shot(page, "overview");

  // A forged form (no CSRF token) is refused; logging out ends the session.
  const forged = await page.request.post(`${base}/console/logout`, { form: { csrf: "forged" } });
  check(forged.status() === 403, "a state change without the CSRF token is refused");
  await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Log out" }).click()]);
  await page.goto(`${base}/console/audit`);
  check(page.url().endsWith("/console/login"), "after logging out the console asks for a login again");
  console.log("console browser test: all passed");
} finally {
  if (holder) holder.kill("SIGKILL");
  await browser.close();
}
