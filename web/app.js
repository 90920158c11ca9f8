// The demo page: draws, runs the network (convnet compiled to WebAssembly) and shows what it
// computed. All the numbers come from the wasm module; this file only moves pixels around and
// builds the page. Read it top to bottom: state, helpers, then one block per page section,
// then startup.

// The engine, imported in start() rather than statically: a missing or broken pkg/ (the
// WebAssembly not built yet) then reaches the status line instead of stopping this module.
let wasm = null;

// ---------------------------------------------------------------------------------------------
// Constants and state
// ---------------------------------------------------------------------------------------------

const MODELS = {
  'fashion-mnist': {
    file: 'models/fashion-mnist.safetensors',
    // Fashion-MNIST images are a white garment on a black background, so we draw the same way.
    background: '#000000',
    colourBrush: false,
  },
  cifar10: {
    file: 'models/cifar10.safetensors',
    // CIFAR-10 photos are colour with no fixed background; mid-grey is a neutral start.
    background: '#808080',
    colourBrush: true,
  },
};

const CANVAS_SIZE = 280;
const KEY_STEP = 10; // pixels the keyboard cursor moves per arrow press
const TOP_K = 5;
// The playground reads the 280x280 canvas at a quarter of its size: detailed enough to show
// edges, small enough to convolve on every stroke.
const PLAYGROUND_SCALE = 4;
const NUMBERS_MAX_SIDE = 8; // inputs up to 8x8 get the numbers table
// Larger files are refused before they are read: the whole file is copied into the
// WebAssembly memory, which never shrinks.
const MAX_FILE_BYTES = 64 * 2 ** 20;
// The errors a successful pass makes stale.
const FILE_AND_PASS_ERRORS = ['Forward pass', 'Reading the image', 'Loading the sample'];
// The grey patch of the tutorial ("CNN, from principles to application") under its edge kernel.
const TUTORIAL_PATCH = [200, 199, 189, 203, 23, 34, 177, 12, 22];

const $ = (id) => document.getElementById(id);

const el = {
  modelSelect: $('model-select'),
  modelInfo: $('model-info'),
  status: $('status'),
  draw: $('draw'),
  cursorRing: document.querySelector('.cursor-ring'),
  canvasWrap: document.querySelector('.canvas-wrap'),
  brush: $('brush'),
  brushValue: $('brush-value'),
  colour: $('colour'),
  colourField: $('colour-field'),
  clear: $('clear'),
  drop: $('drop'),
  file: $('file'),
  samples: $('samples'),
  source: $('source'),
  predictions: $('predictions'),
  timing: $('timing'),
  seen: $('seen'),
  perLayer: $('per-layer'),
  featureMaps: $('feature-maps'),
  filters: $('filters'),
  kernelSelect: $('kernel-select'),
  kernelSame: $('kernel-same'),
  kernelCells: Array.from(document.querySelectorAll('.kernel-cell')),
  tutorialPatch: $('tutorial-patch'),
  kernelUseImage: $('kernel-use-image'),
  kernelInputCaption: $('kernel-input-caption'),
  kernelOutput: $('kernel-output'),
  kernelMapping: $('kernel-mapping'),
  kernelNumbers: $('kernel-numbers'),
};

// willReadFrequently: we call getImageData on every stroke, and without it Chrome warns in the
// console and keeps the canvas on the GPU, which makes each read slow.
const ctx = el.draw.getContext('2d', { willReadFrequently: true });

const state = {
  model: null, // the wasm Model
  modelKey: '',
  info: null, // JSON.parse(model.info())
  forward: null, // the latest wasm Forward (freed when replaced)
  lastFile: null, // {bytes, name} of the last dropped/chosen file, to re-run on a model change
  loadToken: 0, // increases per model load, so a slow load cannot overwrite a newer one
  passFrame: 0, // requestAnimationFrame id of the pending forward pass, 0 when none
  featureLayers: [], // canvases of the feature-map tiles, reused between passes
  featureLayersStale: true, // true after a model change: rebuild the tiles on the next pass
  playgroundMode: 'image', // 'image' (the canvas) or 'patch' (the tutorial's 3x3 patch)
  samplesManifest: undefined, // samples/index.json once fetched (null when absent)
  timings: { wasm: null, model: null },
  errorContext: '', // which part of the page put the current error in #status
};

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function setStatus(message) {
  el.status.textContent = message;
  el.status.classList.remove('error');
  state.errorContext = '';
}

// Errors always reach the page, not only the console: the status line is announced to screen
// readers too. `context` says which part failed, so that part can clear its own error later.
function showError(context, error) {
  const message = error instanceof Error ? error.message : String(error);
  el.status.textContent = `${context}: ${message}`;
  el.status.classList.add('error');
  state.errorContext = context;
}

function clearError(context) {
  if (state.errorContext === context) setStatus(readyMessage());
}

function clearErrors(contexts) {
  if (contexts.includes(state.errorContext)) setStatus(readyMessage());
}

function readyMessage() {
  return state.info ? `Ready: ${state.info.name}. Draw, drop an image or pick a sample.` : '';
}

// Runs fn and reports any exception in #status under `context`.
function guarded(context, fn) {
  try {
    return fn();
  } catch (error) {
    showError(context, error);
    return undefined;
  }
}

// Copies HWC pixels (1 grey or 3 RGB channels) into RGBA ImageData, which canvases draw.
// `offset` picks one tile out of many stored one after another.
function toImageData(bytes, width, height, channels, target = new ImageData(width, height), offset = 0) {
  const out = target.data;
  for (let p = 0; p < width * height; p++) {
    const src = offset + p * channels;
    const dst = p * 4;
    if (channels === 1) {
      out[dst] = out[dst + 1] = out[dst + 2] = bytes[src];
    } else {
      out[dst] = bytes[src];
      out[dst + 1] = bytes[src + 1];
      out[dst + 2] = bytes[src + 2];
    }
    out[dst + 3] = 255;
  }
  return target;
}

// Paints HWC pixels onto a canvas at their own size; CSS scales the canvas up, pixelated.
function paintCanvas(canvas, bytes, width, height, channels) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  canvas.getContext('2d').putImageData(toImageData(bytes, width, height, channels), 0, 0);
}

function makeElement(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// Integers print as integers (377, not 377.00); other numbers with up to 3 decimals.
function formatNumber(value) {
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toFixed(3)));
}

function shapeText(shape) {
  return Array.from(shape).join('x');
}

// ---------------------------------------------------------------------------------------------
// Loading a model
// ---------------------------------------------------------------------------------------------

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function loadModel(key) {
  const token = ++state.loadToken;
  const spec = MODELS[key];
  const label = el.modelSelect.querySelector(`option[value="${key}"]`).textContent;
  document.body.dataset.ready = '';
  setStatus(`Loading the ${label} model…`);
  try {
    const start = performance.now();
    const fileName = spec.file.split('/').pop();
    const model = wasm.Model.fromCheckpoint(await fetchBytes(spec.file), fileName);
    if (token !== state.loadToken) {
      model.free(); // a newer load started meanwhile: it wins
      return;
    }
    state.timings.model = performance.now() - start;
    installModel(key, model);
    showFirstPass();
  } catch (error) {
    if (token !== state.loadToken) return;
    showError(`Loading the ${label} model`, error);
    restorePreviousModel();
  }
}

// Swaps the new model in, freeing the old one, and rebuilds what depends on the model.
function installModel(key, model) {
  cancelPass();
  freeForward();
  if (state.model) state.model.free();
  state.model = model;
  state.modelKey = key;
  state.info = JSON.parse(model.info());
  state.featureLayersStale = true;
  el.modelSelect.value = key;
  rememberModelInUrl(key);
  applyDrawingMode();
  showModelInfo();
  buildPredictionList();
  drawFilters();
  updateTiming(null);
  fillSamples(); // not awaited: the samples can arrive after the first pass
}

// The first pass after a load: the last file again if the user had chosen one (the same
// picture through the other model), else the empty canvas. Only then is the page "ready".
function showFirstPass() {
  const file = state.lastFile;
  if (!file || !runImageFile(file.bytes, file.name)) {
    clearCanvas();
    runDrawingPass();
  }
  if (!state.forward) return; // the pass failed; its error is in #status
  document.body.dataset.ready = state.modelKey;
  if (state.errorContext === '') setStatus(readyMessage());
}

// After a failed load, keep using the model we had (if any) so the page stays usable.
function restorePreviousModel() {
  if (!state.model) return;
  el.modelSelect.value = state.modelKey;
  document.body.dataset.ready = state.modelKey;
}

function rememberModelInUrl(key) {
  const url = new URL(window.location.href);
  url.searchParams.set('model', key);
  window.history.replaceState(null, '', url);
}

function showModelInfo() {
  const { name, description, input, classes, parameters, epoch, best_val_accuracy: accuracy } = state.info;
  const accuracyText = accuracy >= 0 ? `${(accuracy * 100).toFixed(2)}%` : 'unknown';
  const rows = [
    ['Name', name],
    ['Input', `${shapeText(input)} (height x width x channels)`],
    ['Classes', `${classes.length}: ${classes.join(', ')}`],
    ['Parameters', parameters.toLocaleString('en')],
    ['Best validation accuracy', `${accuracyText} after ${epoch} epochs`],
  ];
  const list = makeElement('dl');
  for (const [term, value] of rows) {
    list.append(makeElement('dt', { textContent: term }), makeElement('dd', { textContent: value }));
  }
  el.modelInfo.replaceChildren(makeElement('p', { textContent: description }), list);
}

// ---------------------------------------------------------------------------------------------
// The drawing canvas
// ---------------------------------------------------------------------------------------------

const cursor = { x: CANVAS_SIZE / 2, y: CANVAS_SIZE / 2 };
let activePointer = null; // {id, x, y} of the pointer drawing now

function applyDrawingMode() {
  el.colourField.hidden = !MODELS[state.modelKey].colourBrush;
}

function brushColour() {
  return MODELS[state.modelKey].colourBrush ? el.colour.value : '#ffffff';
}

function brushSize() {
  return Number(el.brush.value);
}

function clearCanvas() {
  ctx.fillStyle = MODELS[state.modelKey].background;
  ctx.fillRect(0, 0, CANVAS_SIZE, CANVAS_SIZE);
}

function paintDot(x, y) {
  ctx.fillStyle = brushColour();
  ctx.beginPath();
  ctx.arc(x, y, brushSize() / 2, 0, 2 * Math.PI);
  ctx.fill();
}

// A line with round caps: consecutive pointer positions join into a smooth stroke.
function paintLine(from, to) {
  ctx.strokeStyle = brushColour();
  ctx.lineWidth = brushSize();
  ctx.lineCap = 'round';
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

// The canvas is CSS-scaled, so page coordinates are converted to its 280x280 pixels.
function canvasPoint(event) {
  const rect = el.draw.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * CANVAS_SIZE) / rect.width,
    y: ((event.clientY - rect.top) * CANVAS_SIZE) / rect.height,
  };
}

// The ring shows where the keyboard paints, sized like the brush. Percentages keep it in place
// however large the canvas is drawn.
function moveCursorRing() {
  const style = el.cursorRing.style;
  style.left = `${(cursor.x / CANVAS_SIZE) * 100}%`;
  style.top = `${(cursor.y / CANVAS_SIZE) * 100}%`;
  style.width = style.height = `${(brushSize() / CANVAS_SIZE) * 100}%`;
}

function onPointerDown(event) {
  if (!state.model || (event.pointerType === 'mouse' && event.button !== 0)) return;
  if (activePointer) return; // one finger draws; a second one is ignored
  el.draw.setPointerCapture(event.pointerId);
  const p = canvasPoint(event);
  activePointer = { id: event.pointerId, ...p };
  el.canvasWrap.classList.remove('keyboard-cursor');
  paintDot(p.x, p.y);
  schedulePass();
}

function onPointerMove(event) {
  if (!activePointer || event.pointerId !== activePointer.id) return;
  const p = canvasPoint(event);
  paintLine(activePointer, p);
  Object.assign(activePointer, p);
  schedulePass();
}

function onPointerUp(event) {
  if (!activePointer || event.pointerId !== activePointer.id) return;
  // The keyboard continues from where the pointer stopped.
  cursor.x = clamp(activePointer.x);
  cursor.y = clamp(activePointer.y);
  moveCursorRing();
  activePointer = null;
}

function clamp(v) {
  return Math.min(CANVAS_SIZE - 1, Math.max(0, Math.round(v)));
}

const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

function onCanvasKey(event) {
  if (!state.model) return;
  const arrow = ARROWS[event.key];
  const paint = event.key === ' ' || event.key === 'Enter';
  if (!arrow && !paint) return; // Tab and everything else keep their usual meaning
  event.preventDefault(); // arrows and Space would otherwise scroll the page
  el.canvasWrap.classList.add('keyboard-cursor');
  if (paint) {
    paintDot(cursor.x, cursor.y);
    schedulePass();
    return;
  }
  const from = { ...cursor };
  cursor.x = clamp(cursor.x + arrow[0] * KEY_STEP);
  cursor.y = clamp(cursor.y + arrow[1] * KEY_STEP);
  moveCursorRing();
  if (event.shiftKey) {
    paintLine(from, cursor);
    schedulePass();
  }
}

function setUpDrawing() {
  el.draw.addEventListener('pointerdown', onPointerDown);
  el.draw.addEventListener('pointermove', onPointerMove);
  el.draw.addEventListener('pointerup', onPointerUp);
  el.draw.addEventListener('pointercancel', onPointerUp);
  el.draw.addEventListener('keydown', onCanvasKey);
  el.draw.addEventListener('blur', () => el.canvasWrap.classList.remove('keyboard-cursor'));
  el.brush.addEventListener('input', () => {
    el.brushValue.textContent = `${brushSize()} px`;
    moveCursorRing();
  });
  el.clear.addEventListener('click', () => {
    if (!state.model) return;
    clearCanvas();
    schedulePass();
  });
  moveCursorRing();
}

// ---------------------------------------------------------------------------------------------
// Forward passes
// ---------------------------------------------------------------------------------------------

// Strokes arrive faster than the screen refreshes; running the network once per frame keeps
// drawing smooth and still looks live.
function schedulePass() {
  if (!state.passFrame) state.passFrame = requestAnimationFrame(runDrawingPass);
}

function cancelPass() {
  if (state.passFrame) cancelAnimationFrame(state.passFrame);
  state.passFrame = 0;
}

function runDrawingPass() {
  state.passFrame = 0;
  state.lastFile = null; // the canvas is now the input, not the file
  guarded('Forward pass', () => {
    const image = ctx.getImageData(0, 0, CANVAS_SIZE, CANVAS_SIZE);
    const start = performance.now();
    const forward = state.model.forwardRgba(new Uint8Array(image.data.buffer), CANVAS_SIZE, CANVAS_SIZE);
    showForward(forward, 'drawing', performance.now() - start);
    clearErrors(FILE_AND_PASS_ERRORS);
  });
}

// A file's own bytes go to the network (decoded and resized as the CLI does); the canvas only
// gets a copy to draw on. The prediction shown is this file's until the user draws again.
function runImageFile(bytes, name) {
  cancelPass();
  return guarded('Reading the image', () => {
    const start = performance.now();
    const forward = state.model.forwardImage(bytes, name);
    const ms = performance.now() - start;
    state.lastFile = { bytes, name };
    // The page owns (and frees) the pass from here on, even if drawing its copy fails.
    showForward(forward, name, ms);
    copyInputToCanvas(forward);
    const [best] = JSON.parse(forward.top(1));
    setStatus(`${name}: ${best.name} (${(best.probability * 100).toFixed(2)}%)`);
    return true;
  });
}

// Draws the network's view of the file onto the 280x280 canvas, blocky rather than blurred so
// it matches what the network saw.
function copyInputToCanvas(forward) {
  const [h, w, c] = state.info.input;
  const small = makeElement('canvas', { width: w, height: h });
  small.getContext('2d').putImageData(toImageData(forward.inputPixels(), w, h, c), 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, CANVAS_SIZE, CANVAS_SIZE);
  ctx.imageSmoothingEnabled = true;
}

function freeForward() {
  if (state.forward) state.forward.free();
  state.forward = null;
}

// Everything that depends on one pass: predictions, timing, the input view, feature maps and
// the playground (when it is looking at the image).
function showForward(forward, source, ms) {
  freeForward();
  state.forward = forward;
  const top = JSON.parse(forward.top(TOP_K));
  showPredictions(top);
  el.source.textContent = source;
  updateTiming(ms);
  showSeen(forward);
  showFeatureMaps(forward);
  if (state.playgroundMode === 'image') runPlayground();
  window.convnetDemo = {
    model: state.modelKey,
    logits: Array.from(forward.logits()),
    probabilities: Array.from(forward.probabilities()),
    top,
    source,
    forwardMs: ms,
  };
}

// ---------------------------------------------------------------------------------------------
// Prediction, timing and the network's view
// ---------------------------------------------------------------------------------------------

// The five list items are built once per model and only updated afterwards.
function buildPredictionList() {
  const items = [];
  for (let rank = 0; rank < TOP_K; rank++) {
    const name = makeElement('span', { className: 'class-name' });
    const fill = makeElement('div', { className: 'bar-fill' });
    const bar = makeElement('div', { className: 'bar' }, [fill]);
    bar.setAttribute('role', 'meter');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    const percent = makeElement('span', { className: 'percent' });
    items.push(makeElement('li', {}, [name, bar, percent]));
  }
  el.predictions.replaceChildren(...items);
}

function showPredictions(top) {
  top.forEach((entry, rank) => {
    const item = el.predictions.children[rank];
    if (!item) return;
    const percent = entry.probability * 100;
    const text = `${percent.toFixed(2)}%`;
    item.dataset.class = String(entry.class);
    item.dataset.probability = String(entry.probability);
    item.querySelector('.class-name').textContent = entry.name;
    item.querySelector('.percent').textContent = text;
    const bar = item.querySelector('.bar');
    bar.setAttribute('aria-valuenow', percent.toFixed(2));
    bar.setAttribute('aria-valuetext', text);
    bar.setAttribute('aria-label', `${entry.name} probability`);
    bar.firstChild.style.width = `${percent}%`;
  });
}

function updateTiming(forwardMs) {
  const parts = [];
  if (forwardMs !== null) parts.push(`Forward pass: ${forwardMs.toFixed(2)} ms`);
  const { wasm, model } = state.timings;
  if (wasm !== null) parts.push(`WebAssembly load: ${wasm.toFixed(0)} ms`);
  if (model !== null) parts.push(`model load: ${model.toFixed(0)} ms`);
  el.timing.textContent = parts.join(' · ');
}

function showSeen(forward) {
  const [h, w, c] = state.info.input;
  paintCanvas(el.seen, forward.inputPixels(), w, h, c);
}

// ---------------------------------------------------------------------------------------------
// Feature maps
// ---------------------------------------------------------------------------------------------

// Builds one section per conv/pool layer with one canvas per channel. Done once per model:
// recreating hundreds of canvases on every stroke would make drawing stutter.
function buildFeatureMaps(forward) {
  state.featureLayers = [];
  const sections = [];
  for (let i = 0; i < forward.layerCount(); i++) {
    if (!forward.isFeatureMap(i)) continue;
    const [h, w, c] = forward.layerShape(i);
    const label = forward.layerLabel(i);
    const tiles = [];
    for (let k = 0; k < c; k++) {
      const canvas = makeElement('canvas', { className: 'tile', width: w, height: h, title: `channel ${k}` });
      tiles.push({ context: canvas.getContext('2d'), image: new ImageData(w, h) });
    }
    const grid = makeElement('div', { className: 'tiles' }, tiles.map((t) => t.context.canvas));
    grid.setAttribute('role', 'img');
    grid.setAttribute('aria-label', `${c} feature maps of ${h} by ${w} pixels`);
    const heading = makeElement('h3', { textContent: `${label}: ${h}x${w}x${c}` });
    sections.push(makeElement('section', { className: 'layer' }, [heading, grid]));
    state.featureLayers.push({ index: i, h, w, tiles });
  }
  el.featureMaps.replaceChildren(...sections);
  state.featureLayersStale = false;
}

function showFeatureMaps(forward) {
  if (state.featureLayersStale) buildFeatureMaps(forward);
  const perLayer = el.perLayer.checked;
  for (const layer of state.featureLayers) {
    const bytes = forward.layerTiles(layer.index, perLayer);
    const size = layer.h * layer.w;
    layer.tiles.forEach((tile, k) => {
      toImageData(bytes, layer.w, layer.h, 1, tile.image, k * size);
      tile.context.putImageData(tile.image, 0, 0);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// First layer's filters
// ---------------------------------------------------------------------------------------------

function drawFilters() {
  const filters = guarded('Filters', () => JSON.parse(state.model.filters()));
  if (!filters) {
    el.filters.replaceChildren(makeElement('p', { textContent: 'This model has no convolution layer.' }));
    return;
  }
  const { label, width, height, channels, columns, labels } = filters;
  const pixels = Uint8Array.from(filters.pixels);
  const size = width * height * channels;
  const canvases = labels.map((tileLabel, t) => {
    const canvas = makeElement('canvas', { className: 'filter', title: tileLabel });
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', tileLabel);
    paintCanvas(canvas, pixels.subarray(t * size, (t + 1) * size), width, height, channels);
    return canvas;
  });
  const grid = makeElement('div', { className: 'filter-grid' }, canvases);
  // columns 0 means "as many as fit"; otherwise keep the layout convnet visualize uses.
  if (columns > 0) grid.style.gridTemplateColumns = `repeat(${columns}, minmax(0, var(--filter-size)))`;
  const caption = `${label}: ${labels.length} tiles of ${width}x${height}${channels === 3 ? ' RGB' : ' grey'}`;
  el.filters.replaceChildren(makeElement('h3', { textContent: caption }), grid);
}

// ---------------------------------------------------------------------------------------------
// Files, the drop zone and samples
// ---------------------------------------------------------------------------------------------

async function handleFile(file) {
  if (!file || !state.model) return;
  if (file.size > MAX_FILE_BYTES) {
    showError('Reading the image', new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MB; the page takes images up to ${MAX_FILE_BYTES / 2 ** 20} MB`));
    return;
  }
  const key = state.modelKey;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (key === state.modelKey) runImageFile(bytes, file.name); // else the model changed meanwhile
  } catch (error) {
    showError('Reading the image', error);
  }
}

function setUpFileInput() {
  el.file.addEventListener('change', () => {
    handleFile(el.file.files[0]);
    el.file.value = ''; // choosing the same file again still fires "change"
  });
  el.drop.addEventListener('click', () => el.file.click());
  el.drop.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' && event.key !== ' ') return;
    event.preventDefault();
    el.file.click();
  });
  el.drop.addEventListener('dragover', (event) => {
    event.preventDefault(); // allows the drop
    event.dataTransfer.dropEffect = 'copy';
    el.drop.classList.add('dragging');
  });
  el.drop.addEventListener('dragleave', () => el.drop.classList.remove('dragging'));
  el.drop.addEventListener('drop', (event) => {
    event.preventDefault();
    el.drop.classList.remove('dragging');
    handleFile(event.dataTransfer.files[0]);
  });
  // A file dropped just beside the zone would make the browser leave the page to show it.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
}

// samples/index.json lists each model's sample images; without it the section says so.
async function loadSamplesManifest() {
  if (state.samplesManifest !== undefined) return state.samplesManifest;
  try {
    const response = await fetch('samples/index.json');
    state.samplesManifest = response.ok ? await response.json() : null;
  } catch {
    state.samplesManifest = null;
  }
  return state.samplesManifest;
}

async function fillSamples() {
  const key = state.modelKey;
  const manifest = await loadSamplesManifest();
  if (key !== state.modelKey) return; // the model changed while we waited
  const entries = (manifest && manifest[key]) || [];
  if (entries.length === 0) {
    el.samples.replaceChildren(makeElement('p', { className: 'hint', textContent: 'No sample images for this model.' }));
    return;
  }
  el.samples.replaceChildren(...entries.map((entry) => sampleButton(key, entry)));
}

// The label is the button's accessible name; the thumbnail is decoration (alt="").
function sampleButton(key, { file, label }) {
  const url = `samples/${key}/${file}`;
  const thumbnail = makeElement('img', { src: url, alt: '', width: 32, height: 32 });
  const button = makeElement('button', { type: 'button', className: 'sample' }, [
    thumbnail,
    makeElement('span', { textContent: label }),
  ]);
  button.addEventListener('click', () => runSample(url, file));
  return button;
}

async function runSample(url, name) {
  if (!state.model) return;
  const key = state.modelKey;
  try {
    const bytes = await fetchBytes(url);
    if (key === state.modelKey) runImageFile(bytes, name); // a sample of the model switched away from is dropped
  } catch (error) {
    showError('Loading the sample', error);
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel playground
// ---------------------------------------------------------------------------------------------

function setUpPlayground() {
  const names = JSON.parse(wasm.kernelNames());
  const options = names.map(([name, description]) => makeElement('option', { value: name, textContent: name, title: description }));
  options.push(makeElement('option', { value: 'custom', textContent: 'custom', title: 'the numbers in the grid below' }));
  el.kernelSelect.replaceChildren(...options);
  el.kernelSelect.value = 'edge-horizontal';

  el.kernelSelect.addEventListener('change', () => runPlayground());
  el.kernelSame.addEventListener('change', () => runPlayground());
  for (const cell of el.kernelCells) {
    cell.addEventListener('input', () => {
      el.kernelSelect.value = 'custom';
      runPlayground();
    });
  }
  el.tutorialPatch.addEventListener('click', () => {
    state.playgroundMode = 'patch';
    el.kernelSelect.value = 'edge-horizontal';
    el.kernelSame.checked = false; // the tutorial slides the kernel without padding: one output
    runPlayground();
  });
  el.kernelUseImage.addEventListener('click', () => {
    state.playgroundMode = 'image';
    runPlayground();
  });
}

// The grid as kernel text: rows separated by ';', values by ','.
function cellsKernelText() {
  const values = el.kernelCells.map((cell) => cell.value.trim());
  return [0, 3, 6].map((start) => values.slice(start, start + 3).join(',')).join(';');
}

// The kernel the engine used, exactly, as rows.
function kernelMatrix(result) {
  const values = result.kernelValues();
  const rows = [];
  for (let r = 0; r < result.kernelHeight; r++) rows.push(Array.from(values.subarray(r * result.kernelWidth, (r + 1) * result.kernelWidth)));
  return rows;
}

function fillCells(rows) {
  rows.flat().forEach((value, i) => {
    if (el.kernelCells[i]) el.kernelCells[i].value = formatNumber(value);
  });
}

// An off-screen canvas that shrinks the drawing for the playground, made once because the
// playground runs after every forward pass.
const PLAYGROUND_SIDE = CANVAS_SIZE / PLAYGROUND_SCALE;
const playgroundCtx = makeElement('canvas', { width: PLAYGROUND_SIDE, height: PLAYGROUND_SIDE })
  .getContext('2d', { willReadFrequently: true });

// The playground's input: the tutorial's patch, or the drawing canvas at 1/4 scale as RGBA.
function playgroundInput() {
  if (state.playgroundMode === 'patch') {
    return { pixels: Uint8Array.from(TUTORIAL_PATCH), height: 3, width: 3, channels: 1,
      caption: "Input: the tutorial's 3x3 grey patch." };
  }
  const side = PLAYGROUND_SIDE;
  playgroundCtx.drawImage(el.draw, 0, 0, side, side);
  const pixels = new Uint8Array(playgroundCtx.getImageData(0, 0, side, side).data.buffer);
  return { pixels, height: side, width: side, channels: 4,
    caption: `Input: your canvas at 1/${PLAYGROUND_SCALE} scale (${side}x${side} pixels); colour images are filtered one colour at a time.` };
}

function runPlayground() {
  if (!state.model && state.playgroundMode === 'image') return;
  const input = playgroundInput();
  const named = el.kernelSelect.value !== 'custom';
  const kernelText = named ? el.kernelSelect.value : cellsKernelText();
  const result = guarded('Kernel', () =>
    wasm.applyKernel(input.pixels, input.height, input.width, input.channels, kernelText, el.kernelSame.checked));
  if (!result) return;
  try {
    const kernel = kernelMatrix(result);
    if (named) fillCells(kernel);
    el.kernelInputCaption.textContent = input.caption;
    paintCanvas(el.kernelOutput, result.pixels(), result.width, result.height, result.channels);
    el.kernelMapping.textContent = result.mapping;
    showKernelNumbers(input, kernel, result);
    clearError('Kernel');
  } finally {
    result.free();
  }
}

// ---- The numbers view (small grey inputs only) ----

function showKernelNumbers(input, kernel, result) {
  const small = input.channels === 1 && input.height <= NUMBERS_MAX_SIDE && input.width <= NUMBERS_MAX_SIDE;
  el.kernelNumbers.hidden = !small;
  if (!small) {
    el.kernelNumbers.replaceChildren();
    return;
  }
  const image = [];
  for (let r = 0; r < input.height; r++) image.push(Array.from(input.pixels.subarray(r * input.width, (r + 1) * input.width)));
  const responses = result.responses();
  const output = [];
  for (let r = 0; r < result.height; r++) output.push(Array.from(responses.subarray(r * result.width, (r + 1) * result.width)));

  const columns = Math.max(input.width, kernel[0].length, result.width);
  el.kernelNumbers.replaceChildren(
    makeElement('caption', { textContent: 'The numbers: the kernel times each patch, summed' }),
    numbersGroup('Input (grey levels)', image, columns, ''),
    numbersGroup('Kernel', kernel, columns, ''),
    numbersGroup(`Output (${result.height}x${result.width})`, output, columns, 'response'),
    sumFooter(image, kernel, output[0][0], columns),
  );
}

// One labelled block of the table: a heading row, then the matrix.
function numbersGroup(title, matrix, columns, cellClass) {
  // scope "rowgroup": the heading names every row of its tbody.
  const heading = makeElement('th', { textContent: title, scope: 'rowgroup', colSpan: columns });
  const rows = [makeElement('tr', {}, [heading])];
  for (const row of matrix) {
    rows.push(makeElement('tr', {}, row.map((v) => makeElement('td', { className: cellClass, textContent: formatNumber(v) }))));
  }
  return makeElement('tbody', {}, rows);
}

// The first (top-left) output written out as the sum of pixel x weight products. Its total is
// the engine's number; the terms are recomputed here only to show where it comes from.
function sumFooter(image, kernel, total, columns) {
  const pad = el.kernelSame.checked ? Math.floor(kernel.length / 2) : 0;
  let exact = true;
  const terms = [];
  kernel.forEach((row, a) => row.forEach((weight, b) => {
    const pixel = image[a - pad]?.[b - pad] ?? 0; // zero padding outside the image
    const product = pixel * weight;
    if (!Number.isInteger(product)) exact = false;
    terms.push(product);
  }));
  const written = terms.map((t, i) => {
    const magnitude = formatNumber(Math.abs(t));
    if (i === 0) return t < 0 ? `-${magnitude}` : magnitude;
    return t < 0 ? ` - ${magnitude}` : ` + ${magnitude}`;
  }).join('');
  // Weights such as 1/9 give products that are not whole numbers, shown rounded.
  const text = `${pad ? 'Top-left output, with the zero padding: ' : ''}${written} ${exact ? '=' : '≈'} ${formatNumber(total)}`;
  const cell = makeElement('td', { className: 'sum', colSpan: columns, textContent: text });
  return makeElement('tfoot', {}, [makeElement('tr', {}, [cell])]);
}

// ---------------------------------------------------------------------------------------------
// Startup
// ---------------------------------------------------------------------------------------------

function initialModelKey() {
  const requested = new URLSearchParams(window.location.search).get('model');
  return Object.hasOwn(MODELS, requested) ? requested : el.modelSelect.value || 'fashion-mnist';
}

function setUpControls() {
  el.modelSelect.addEventListener('change', () => loadModel(el.modelSelect.value));
  el.perLayer.addEventListener('change', () => {
    if (state.forward) guarded('Feature maps', () => showFeatureMaps(state.forward));
  });
  setUpDrawing();
  setUpFileInput();
}

async function start() {
  document.body.dataset.ready = '';
  setUpControls();
  try {
    const begin = performance.now();
    wasm = await import('./pkg/convnet_web.js');
    await wasm.default();
    state.timings.wasm = performance.now() - begin;
  } catch (error) {
    showError('Loading the WebAssembly engine (pkg/convnet_web.js)', error);
    return;
  }
  guarded('Kernel playground', setUpPlayground);
  await loadModel(initialModelKey());
}

start();
