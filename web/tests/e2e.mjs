// The web demo end to end in headless Chromium (docs/web.md), driven by playwright-core.
//
//   node web/tests/e2e.mjs [--convnet target/debug/convnet] [--out target/web-e2e]
//
// Starts `convnet serve-demo --port 0` (127.0.0.1, any free port), opens the page and checks,
// as a user would see it: the model loads; a stroke drawn with the mouse (and one with the
// keyboard) gives a top-5 list and every conv and pool layer's feature-map tiles; real test
// images (dropped on the drop zone, and chosen with the file input) get the class `convnet
// predict` gives on the same file and checkpoint, with logits equal to the native ones within
// 1e-5 relative; the kernel playground on the tutorial's patch reads 377; the page fits a
// phone's width; no console error or warning. It writes screenshots and the timings (load,
// forward pass) to the output folder, and exits non-zero on the first failed check.

import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = parseArgs(process.argv.slice(2));
const CONVNET = resolve(args.convnet ?? join(ROOT, 'target', 'debug', 'convnet'));
const OUT = resolve(args.out ?? join(ROOT, 'target', 'web-e2e'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const MAX_RELATIVE_ERROR = 1e-5;
// Feature-map channels of the demo models' conv and pool layers (web/models/*.toml).
const FEATURE_TILES = { 'fashion-mnist': 8 + 8 + 16 + 16, cifar10: 16 + 16 + 32 + 32 + 64 + 64 };

function parseArgs(list) {
  const parsed = {};
  for (let i = 0; i < list.length; i += 2) {
    if (!list[i].startsWith('--') || list[i + 1] === undefined) throw new Error(`bad arguments: ${list.join(' ')}`);
    parsed[list[i].slice(2)] = list[i + 1];
  }
  return parsed;
}

let checks = 0;
function check(condition, what) {
  if (!condition) throw new Error(`FAILED: ${what}`);
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

// `convnet serve-demo` on a free port; resolves with its address once it prints it.
function startServer() {
  const server = spawn(CONVNET, ['serve-demo', '--port', '0', '--dir', join(ROOT, 'web')], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolvePromise, reject) => {
    let text = '';
    server.stdout.on('data', (chunk) => {
      text += chunk;
      const match = text.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (match) resolvePromise({ server, url: match[0] });
    });
    server.on('exit', (code) => reject(new Error(`convnet serve-demo exited with ${code} before serving`)));
  });
}

// What `convnet predict --json` says about `image` under `checkpoint`.
function nativePrediction(checkpoint, image) {
  const out = execFileSync(CONVNET, ['predict', '--json', '--model', checkpoint, image], { encoding: 'utf8' });
  return JSON.parse(out.trim());
}

// The largest difference between two logit vectors, relative to the largest native logit.
function relativeError(browser, native) {
  const scale = Math.max(...native.map(Math.abs));
  return Math.max(...native.map((v, i) => Math.abs(browser[i] - v))) / scale;
}

async function waitForModel(page, key) {
  await page.waitForSelector(`body[data-ready="${key}"]`, { timeout: 60_000 });
}

// The page's last forward pass (window.convnetDemo), once its source is `source`.
async function passFrom(page, source) {
  await page.waitForFunction((s) => window.convnetDemo?.source === s, source, { timeout: 20_000 });
  return page.evaluate(() => window.convnetDemo);
}

async function predictionList(page) {
  return page.$$eval('#predictions li', (items) => items.map((li) => ({
    cls: Number(li.dataset.class), probability: Number(li.dataset.probability), text: li.textContent,
  })));
}

// Drops the file at `path` on the drop zone, as a drag from the desktop would.
async function dropFile(page, path, type) {
  const bytes = [...readFileSync(path)];
  const name = path.split('/').pop();
  await page.evaluate(({ bytes, name, type }) => {
    const file = new File([new Uint8Array(bytes)], name, { type });
    const transfer = new DataTransfer();
    transfer.items.add(file);
    const zone = document.getElementById('drop');
    for (const kind of ['dragenter', 'dragover', 'drop']) {
      zone.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
  }, { bytes, name, type });
}

// The browser's prediction for a file equals convnet predict's on the same file and checkpoint.
async function checkSameAsNative(page, modelKey, imagePath, how) {
  const name = imagePath.split('/').pop();
  const pass = await passFrom(page, name);
  const native = nativePrediction(join(ROOT, 'web', 'models', `${modelKey}.safetensors`), imagePath);
  const error = relativeError(pass.logits, native.logits);
  check(pass.top[0].class === native.top5[0].class,
    `${how} ${modelKey}/${name}: the page predicts ${pass.top[0].name}, as convnet predict does (${native.top5[0].name})`);
  check(error <= MAX_RELATIVE_ERROR, `${how} ${modelKey}/${name}: wasm logits equal the native ones (relative error ${error.toExponential(2)})`);
  const listed = await predictionList(page);
  check(listed.length === 5 && listed[0].cls === native.top5[0].class, `${how} ${modelKey}/${name}: the top-5 list shows it first`);
  return error;
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const problems = [];
  const { server, url } = await startServer();
  const metrics = { url, wasm_bytes: statSync(join(ROOT, 'web', 'pkg', 'convnet_web_bg.wasm')).size };
  let browser = null;
  try {
    // --disable-dev-shm-usage: containers often have a small /dev/shm, and the page has
    // hundreds of canvases.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });

    // Load: from navigation to the first pass drawn.
    const begin = Date.now();
    await page.goto(url);
    await waitForModel(page, 'fashion-mnist');
    metrics.load_ms = Date.now() - begin;
    check(true, `the page loads and the Fashion-MNIST model is ready (${metrics.load_ms} ms)`);

    // The first conv layer's tiles, as pixels, to tell a stroke from the empty canvas.
    const firstLayerTiles = () => page.evaluate(() => {
      const canvases = document.querySelector('#feature-maps section.layer').querySelectorAll('canvas.tile');
      // toDataURL rather than getImageData: repeated readbacks of one canvas make Chromium
      // warn on the console, which this test counts as a problem.
      return [...canvases].map((c) => c.toDataURL());
    });
    const blankTiles = await firstLayerTiles();
    const blankLogits = await page.evaluate(() => window.convnetDemo.logits);

    // A stroke with the mouse.
    const box = await page.locator('#draw').boundingBox();
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.2);
    await page.mouse.down();
    for (let t = 0; t <= 1; t += 0.1) await page.mouse.move(box.x + box.width * (0.3 + 0.4 * t), box.y + box.height * (0.2 + 0.6 * t));
    await page.mouse.up();
    const drawn = await passFrom(page, 'drawing');
    const list = await predictionList(page);
    check(list.length === 5, 'a stroke gives a top-5 list');
    check(list.every((item, i) => i === 0 || item.probability <= list[i - 1].probability), 'the list is most probable first');
    check(list.every((item) => /\d+\.\d\d%/.test(item.text)), 'each entry shows its percentage');
    check(Math.abs(drawn.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4, 'the probabilities sum to 1');
    const tiles = await page.locator('#feature-maps canvas.tile').count();
    check(tiles === FEATURE_TILES['fashion-mnist'], `every conv and pool channel has a feature-map tile (${tiles})`);
    const strokeTiles = await firstLayerTiles();
    const changed = strokeTiles.filter((tile, i) => tile !== blankTiles[i]).length;
    check(changed === strokeTiles.length, `every first-layer tile changes with the stroke (${changed} of ${strokeTiles.length})`);
    check(drawn.logits.some((v, i) => v !== blankLogits[i]), 'the stroke changes the logits');
    const filters = await page.locator('#filters canvas').count();
    check(filters === 8, `the first layer's 8 filters are drawn (${filters})`);
    await page.screenshot({ path: join(OUT, 'drawing.png'), fullPage: true });
    await page.screenshot({ path: join(OUT, 'overview.png') });

    // The keyboard: clear, focus the canvas, paint with Space, move with Shift+arrows; the
    // pass must differ from the empty canvas's.
    await page.click('#clear');
    await page.waitForFunction((blank) => window.convnetDemo.logits.every((v, i) => v === blank[i]), blankLogits);
    await page.focus('#draw');
    await page.keyboard.press('Space');
    for (let i = 0; i < 6; i++) await page.keyboard.press('Shift+ArrowDown');
    await page.waitForFunction((blank) => window.convnetDemo.logits.some((v, i) => v !== blank[i]), blankLogits, { timeout: 10_000 });
    check((await predictionList(page)).length === 5, 'drawing with the keyboard changes the prediction');

    // Real test images: dropped, and chosen with the file input; equal to convnet predict.
    const errors = [];
    for (const n of [0, 3]) {
      const image = join(ROOT, 'web', 'samples', 'fashion-mnist', `${n}.png`);
      await dropFile(page, image, 'image/png');
      errors.push(await checkSameAsNative(page, 'fashion-mnist', image, 'dropped'));
    }
    await page.screenshot({ path: join(OUT, 'dropped.png'), fullPage: true });

    await page.selectOption('#model-select', 'cifar10');
    await waitForModel(page, 'cifar10');
    check(await page.locator('#colour').isVisible(), 'CIFAR-10 mode shows the colour picker');
    for (const n of [1, 6]) {
      const image = join(ROOT, 'web', 'samples', 'cifar10', `${n}.png`);
      await page.setInputFiles('#file', image);
      errors.push(await checkSameAsNative(page, 'cifar10', image, 'chosen'));
    }
    const cifarTiles = await page.locator('#feature-maps canvas.tile').count();
    check(cifarTiles === FEATURE_TILES.cifar10, `CIFAR-10: every conv and pool channel has a tile (${cifarTiles})`);
    metrics.max_logit_relative_error = Math.max(...errors);
    await page.screenshot({ path: join(OUT, 'cifar10.png'), fullPage: true });
    await page.locator('#feature-maps').screenshot({ path: join(OUT, 'feature-maps.png') });

    // A bad file gets a clear message, not a broken page.
    await dropFile(page, join(ROOT, 'web', 'samples', 'index.json'), 'application/json');
    await page.waitForFunction(() => /not a PNG or JPEG/.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
    check(true, 'a dropped non-image file is refused with a message in the status line');

    // The kernel playground on the tutorial's patch.
    await page.click('#tutorial-patch');
    await page.waitForSelector('#kernel-numbers td.response');
    const responses = await page.$$eval('#kernel-numbers td.response', (cells) => cells.map((c) => c.textContent.trim()));
    check(responses.length === 1 && responses[0] === '377', `the edge kernel on the tutorial's patch reads ${responses.join(', ')} (377)`);
    await page.locator('#playground').screenshot({ path: join(OUT, 'playground.png') });
    await page.click('#kernel-use-image');
    await page.selectOption('#kernel-select', 'sobel-x');
    check(await page.locator('#kernel-numbers').isHidden(), 'on the drawn image the playground shows the picture only');

    // Forward-pass time in Chromium, median of 11 samples of 20 passes: an image at the model's
    // input size (the pass itself: every layer's output kept, softmax), and the 280x280
    // canvas of a stroke (plus its conversion and resize).
    metrics.forward_ms = await page.evaluate(async () => {
      const wasm = await import('./pkg/convnet_web.js');
      // The page's clock ticks in 0.1 ms steps, so each sample times 20 passes.
      const median = (run) => {
        const samples = [];
        for (let i = 0; i < 11; i++) {
          const t = performance.now();
          for (let j = 0; j < 20; j++) run().free();
          samples.push((performance.now() - t) / 20);
        }
        return samples.sort((a, b) => a - b)[5];
      };
      const times = {};
      for (const [key, side] of [['fashion-mnist', 28], ['cifar10', 32]]) {
        const bytes = new Uint8Array(await (await fetch(`models/${key}.safetensors`)).arrayBuffer());
        const model = wasm.Model.fromCheckpoint(bytes, `${key}.safetensors`);
        const small = new Uint8Array(side * side * 4).fill(128);
        const canvas = new Uint8Array(280 * 280 * 4).fill(128);
        times[key] = {
          input_size: median(() => model.forwardRgba(small, side, side)),
          canvas_280: median(() => model.forwardRgba(canvas, 280, 280)),
        };
        model.free();
      }
      return times;
    });
    const ms = (key) => `${metrics.forward_ms[key].input_size.toFixed(2)} ms (${metrics.forward_ms[key].canvas_280.toFixed(2)} ms from the canvas)`;
    check(metrics.forward_ms.cifar10.input_size > 0, `forward pass in Chromium: Fashion-MNIST ${ms('fashion-mnist')}, CIFAR-10 ${ms('cifar10')}`);

    // Phone width: one column, nothing wider than the screen.
    const phone = await browser.newPage({ viewport: { width: 375, height: 800 }, isMobile: true, hasTouch: true });
    phone.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`phone console ${m.type()}: ${m.text()}`); });
    phone.on('pageerror', (e) => problems.push(`phone page error: ${e.message}`));
    await phone.goto(url);
    await waitForModel(phone, 'fashion-mnist');
    const widths = await phone.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    check(widths[0] <= widths[1], `at 375 px nothing is wider than the screen (${widths[0]} <= ${widths[1]})`);
    await phone.screenshot({ path: join(OUT, 'phone.png'), fullPage: false });

    // Without the WebAssembly (web/pkg/ not built): the status line says so. A separate page
    // whose request for the engine fails; its expected console error is not a problem.
    const unbuilt = await browser.newPage();
    await unbuilt.route('**/pkg/convnet_web.js', (route) => route.fulfill({ status: 404, body: 'not built' }));
    await unbuilt.goto(url);
    await unbuilt.waitForFunction(() => /^Loading the WebAssembly engine/.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
    check(await unbuilt.locator('#status.error').count() === 1, 'without web/pkg/ the status line names the missing engine');
    await unbuilt.close();

    check(problems.length === 0, `no console errors or warnings, failed requests or page errors${problems.length ? ':\n  ' + problems.join('\n  ') : ''}`);
  } finally {
    writeFileSync(join(OUT, 'metrics.json'), JSON.stringify(metrics, null, 2) + '\n');
    if (browser) await browser.close();
    server.kill();
  }
  console.log(`all ${checks} checks passed; screenshots and metrics.json in ${OUT}`);
  console.log(JSON.stringify(metrics));
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
